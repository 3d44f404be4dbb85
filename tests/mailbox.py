"""A real SMTP server on loopback (aiosmtpd) that keeps what it receives, for the mail tests.

`Mailbox()` listens on a free 127.0.0.1 port; `url` is the SMTP_URL that reaches it. With
`tls="starttls"` or `tls="implicit"` it speaks TLS with a self-signed certificate made for
127.0.0.1 (its file is `cafile`, which the client must trust: `?cafile=`). `refuse(code, n)`
makes the next n messages get that SMTP answer instead of being accepted.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import ssl
import tempfile
import threading
import time
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from aiosmtpd.controller import Controller

from tests.service import free_port

LINK = re.compile(r"https?://\S+")


def self_signed(directory: Path) -> tuple[Path, Path]:
    """(certificate, key) for 127.0.0.1 and localhost, valid for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class _Handler:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.box._lock:
            if self.box._refusals:
                return self.box._refusals.pop(0)
            message = message_from_bytes(envelope.content, policy=policy.default)
            self.box.messages.append(message)  # type: ignore[arg-type]
            self.box.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"


class Mailbox:
    def __init__(self, tls: str | None = None) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self._refusals: list[str] = []
        self._lock = threading.Lock()
        self.port = free_port()
        self.tls = tls
        self.cafile: Path | None = None
        kwargs: dict[str, Any] = {}
        if tls:
            self._dir = tempfile.TemporaryDirectory(prefix="authsvc-smtp-")
            cert, key = self_signed(Path(self._dir.name))
            self.cafile = cert
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
            if tls == "implicit":
                kwargs["ssl_context"] = context
            else:
                kwargs.update(tls_context=context, require_starttls=True)
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port, **kwargs)

    def __enter__(self) -> Mailbox:
        self.controller.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.controller.stop()

    @property
    def url(self) -> str:
        scheme = "smtps" if self.tls == "implicit" else "smtp"
        query = []
        if self.tls == "starttls":
            query.append("starttls=1")
        if self.cafile:
            query.append("cafile=" + quote(str(self.cafile), safe=""))
        query.append("timeout=5")
        return f"{scheme}://127.0.0.1:{self.port}?" + "&".join(query)

    def refuse(self, answer: str, times: int = 1) -> None:
        """The next `times` messages get `answer` (e.g. "451 4.3.0 try later")."""
        with self._lock:
            self._refusals.extend([answer] * times)

    def wait_for(self, count: int = 1, timeout: float = 15) -> list[EmailMessage]:
        """The first `count` messages, once that many arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= count:
                    return list(self.messages[:count])
            time.sleep(0.02)
        raise AssertionError(f"expected {count} message(s), the server got {len(self.messages)}")

    def to(self, address: str, timeout: float = 15) -> list[EmailMessage]:
        """The messages to `address`, once there is one."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                found = [m for m in self.messages if m["To"] == address]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.02)


def link_in(message: EmailMessage) -> str:
    """The one link in the message's text part."""
    text = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    links = LINK.findall(text)
    assert len(links) == 1, text
    return links[0]


def token_in(message: EmailMessage) -> str:
    return parse_qs(urlsplit(link_in(message)).query)["token"][0]
