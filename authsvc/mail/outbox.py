"""The development outbox: every message as a file under the data dir, listed at /dev/outbox.

Used only with AUTHSVC_ENV=development and no SMTP_URL. A file per message (not memory) so every
gunicorn worker writes to, and /dev/outbox on any worker reads, the same outbox. The log says a
message was written and where to read it; it never carries the message's link, which holds a
token.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

log = logging.getLogger("authsvc.mail")

KEEP = 200  # the newest messages kept; older ones are removed as new ones arrive


class OutboxMailer:
    def __init__(self, directory: Path, public_url: str) -> None:
        self.directory = directory
        self.public_url = public_url
        self.description = f"development outbox at {directory}"

    def send(self, message: EmailMessage) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.eml"
        temporary = self.directory / f".{name}.tmp"
        temporary.write_bytes(message.as_bytes())
        os.replace(temporary, self.directory / name)  # readers never see half a message
        log.info(
            "mail written to the development outbox",
            extra={
                "to": message["To"],
                "subject": message["Subject"],
                "file": str(self.directory / name),
                "read_at": f"{self.public_url}/dev/outbox",
            },
        )
        for old in sorted(self.directory.glob("*.eml"))[:-KEEP]:
            old.unlink(missing_ok=True)


def read_outbox(directory: Path, limit: int = 50) -> list[EmailMessage]:
    """The newest messages first."""
    if not directory.is_dir():
        return []
    messages = []
    for path in sorted(directory.glob("*.eml"), reverse=True)[:limit]:
        try:
            raw = path.read_bytes()
        except OSError:
            continue  # removed meanwhile
        messages.append(message_from_bytes(raw, policy=policy.default))
    return messages  # type: ignore[return-value]
