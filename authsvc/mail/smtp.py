"""Mail over SMTP with the standard library: SMTP_URL is smtp://[user:password@]host[:port]
(`?starttls=1` upgrades the connection), or smtps:// for TLS from the first byte.

Query options: `starttls=1`, `timeout=<seconds>` (default 10), `cafile=<path>` (a CA bundle for
a server whose certificate the system does not trust).
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit

from authsvc.config import ConfigError
from authsvc.mail import MailError

log = logging.getLogger("authsvc.mail")

_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    implicit_tls: bool = False
    starttls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 10.0
    cafile: str | None = None

    def describe(self) -> str:
        tls = "TLS" if self.implicit_tls else "STARTTLS" if self.starttls else "no TLS"
        return f"SMTP {self.host}:{self.port} ({tls})"


def parse_smtp_url(url: str) -> SmtpTarget:
    """The SMTP server SMTP_URL names; ConfigError saying what is wrong with it."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ConfigError("SMTP_URL is not a URL like smtp://host:587?starttls=1.") from None
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ConfigError(
            "SMTP_URL must look like smtp://[user:password@]host[:port][?starttls=1] or "
            f"smtps://host[:port], got scheme {parts.scheme!r}."
        )
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = set(query) - {"starttls", "timeout", "cafile"}
    if unknown:
        raise ConfigError(f"SMTP_URL has unknown options: {', '.join(sorted(unknown))}.")
    implicit = parts.scheme == "smtps"
    starttls = query.get("starttls", "").lower() in _TRUE
    if implicit and starttls:
        raise ConfigError("SMTP_URL: smtps:// already uses TLS; drop ?starttls=1.")
    try:
        timeout = float(query.get("timeout", "10"))
    except ValueError:
        raise ConfigError("SMTP_URL: timeout must be a number of seconds.") from None
    return SmtpTarget(
        host=parts.hostname,
        port=port or (465 if implicit else 25),
        implicit_tls=implicit,
        starttls=starttls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        timeout=timeout,
        cafile=query.get("cafile"),
    )


class SmtpMailer:
    """Mailer over SMTP: one connection per message (mail is rare and off the request path)."""

    def __init__(self, target: SmtpTarget) -> None:
        self.target = target
        self.description = target.describe()

    def _tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.target.cafile)

    def _connect(self) -> smtplib.SMTP:
        t = self.target
        if t.implicit_tls:
            return smtplib.SMTP_SSL(t.host, t.port, timeout=t.timeout, context=self._tls())
        return smtplib.SMTP(t.host, t.port, timeout=t.timeout)

    def send(self, message: EmailMessage) -> None:
        t = self.target
        try:
            with self._connect() as smtp:
                smtp.ehlo()
                if t.starttls:
                    smtp.starttls(context=self._tls())
                    smtp.ehlo()
                if t.username:
                    smtp.login(t.username, t.password or "")
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise MailError(
                f"the server refused the recipient ({', '.join(map(str, codes))})",
                permanent=all(code >= 500 for code in codes),
            ) from exc
        except smtplib.SMTPAuthenticationError as exc:
            raise MailError(f"the server refused the login ({exc.smtp_code})", True) from exc
        except smtplib.SMTPResponseException as exc:
            raise MailError(
                f"the server answered {exc.smtp_code}", permanent=exc.smtp_code >= 500
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:  # refused, reset, timeout, TLS
            raise MailError(f"{type(exc).__name__}: {exc}") from exc
