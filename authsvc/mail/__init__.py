"""Mail: the Mailer port, the message the services compose, and the sender for the settings.

The services compose a `Mail` (who, why, subject, text with one link) and hand it to the
MailQueue (queue.py), which sends it off the request path through a Mailer, retrying, logging
and counting every failure. Mailers: SMTP (`SMTP_URL`, smtp.py); in development without
SMTP_URL, the outbox (outbox.py: a file per message under the data dir, shown at /dev/outbox);
in production without SMTP_URL, none (every mail is reported undelivered).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import TYPE_CHECKING, Protocol
from uuid import UUID

if TYPE_CHECKING:
    from authsvc.config import Settings

OUTBOX_DIR = "outbox"


class MailError(Exception):
    """A message could not be handed over. `permanent` when retrying cannot help."""

    def __init__(self, reason: str, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


@dataclass(frozen=True)
class Mail:
    """One message the service sends to a person: a plain-text body holding one link."""

    kind: str  # "email_verification" | "password_reset"
    to: str
    subject: str
    text: str
    user_id: UUID | None = None

    def message(self, sender: str) -> EmailMessage:
        """The RFC 5322 message, from `sender`."""
        msg = EmailMessage()
        msg["From"] = sender
        msg["To"] = self.to
        msg["Subject"] = self.subject
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
        # Not email.utils.make_msgid: it draws from the shared `random` state.
        msg["Message-ID"] = f"<{secrets.token_hex(16)}@{domain}>"
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(self.text)
        return msg


class Mailer(Protocol):
    """Hands one message to the mail system; MailError when it cannot."""

    description: str

    def send(self, message: EmailMessage) -> None: ...


class Outgoing(Protocol):
    """Where the services hand mail over (the MailQueue): `compose` runs later, off the request
    path, and returns the Mail to send, or None when there is nothing to send."""

    def submit(self, kind: str, compose: Callable[[], Mail | None]) -> None: ...


class NoMailer:
    """Production without SMTP_URL: every message is reported as undelivered."""

    description = "none (SMTP_URL is not set)"
    delivers = False  # the queue does not even compose for it: no link is made for nobody

    def send(self, message: EmailMessage) -> None:
        raise MailError("SMTP_URL is not set: no mail can be sent", permanent=True)


def make_mailer(settings: Settings) -> Mailer:
    """SMTP when SMTP_URL is set; the development outbox; else NoMailer. A bad SMTP_URL raises
    ConfigError (the start stops, saying what to set)."""
    if settings.smtp_url:
        from authsvc.mail.smtp import SmtpMailer, parse_smtp_url

        return SmtpMailer(parse_smtp_url(settings.smtp_url))
    if not settings.production:
        from authsvc.mail.outbox import OutboxMailer

        return OutboxMailer(settings.data_dir / OUTBOX_DIR, settings.public_url)
    return NoMailer()
