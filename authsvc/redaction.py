"""Connection strings shown without their passwords, in every form libpq accepts."""

from __future__ import annotations

import re
from urllib.parse import unquote

REDACTED = "***"
# libpq's parameters that carry a secret (a password, or the passphrase of the client key).
_SECRET_PARAMS = frozenset({"password", "sslpassword"})
# What may follow the "@" of a URL's user info: host names, IPv6 literals, ports, commas.
_HOSTS = re.compile(r"[A-Za-z0-9.\-_:,\[\]%]*")
# key = value, the value bare or single-quoted with backslash escapes (libpq's conninfo syntax).
_CONNINFO_PAIR = re.compile(r"([A-Za-z_]+)(\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)")


def redact_url(url: str) -> str:
    """A connection string with every password hidden, in each form libpq accepts: URLs
    (postgresql:// or postgres://, one host or several, the password in the user info or in
    the query) and key=value strings (values bare or quoted); other URLs (redis://) too. For
    logs, `doctor` and repr."""
    stripped = url.strip()
    scheme, sep, rest = stripped.partition("://")
    if sep and scheme.replace("+", "").replace("-", "").isalnum():
        # postgresql:// and postgres://, and any other URL (redis://, rediss://) alike.
        return _redact_uri(scheme, rest)
    return _CONNINFO_PAIR.sub(_redact_pair, stripped)


def _redact_pair(match: re.Match[str]) -> str:
    key, equals, value = match.groups()
    if key.lower() in _SECRET_PARAMS:
        return f"{key}{equals}{REDACTED}"
    return match.group(0)


def _redact_uri(scheme: str, rest: str) -> str:
    # libpq ends the user info at the first "@" before any "/". A password typed without
    # percent-encoding may itself hold "@", "/" or "?", so take the last "@" that is followed
    # by something shaped like a host list: whatever precedes it is hidden after the user name.
    for at in (i for i in range(len(rest) - 1, -1, -1) if rest[i] == "@"):
        after = rest[at + 1 :]
        end = min((i for i in (after.find("/"), after.find("?")) if i >= 0), default=len(after))
        if _HOSTS.fullmatch(after[:end]):
            userinfo = rest[:at]
            if ":" in userinfo:
                rest = f"{userinfo.split(':', 1)[0]}:{REDACTED}@{after}"
            break
    head, question, query = rest.partition("?")
    if question:
        params = []
        for param in query.split("&"):
            key, equals, _value = param.partition("=")
            secret = equals and unquote(key).strip().lower() in _SECRET_PARAMS
            params.append(f"{key}={REDACTED}" if secret else param)
        rest = f"{head}?{'&'.join(params)}"
    return f"{scheme}://{rest}"
