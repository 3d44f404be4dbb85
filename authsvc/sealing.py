"""Sealed blobs: AES-256-GCM under keys derived from the signing secrets, for one purpose each.

A key of its own per purpose (HKDF with the purpose as info), so a sealed idempotent answer
and a signed token never share a key. Seals with the current secret; opens with the current or
any previous one (AUTHSVC_PREVIOUS_SECRET_KEYS), so a rotation breaks nothing in flight.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = b"\x01"
_NONCE = 12


def derive_key(secret: str, purpose: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"authsvc " + purpose.encode()
    ).derive(secret.encode())


class Sealer:
    def __init__(self, secrets: list[str], purpose: str) -> None:
        if not secrets:
            raise ValueError("a Sealer needs at least the current secret")
        self._ciphers = [AESGCM(derive_key(secret, purpose)) for secret in secrets]

    def seal(self, data: bytes, context: bytes) -> bytes:
        """`data` encrypted and authenticated, bound to `context` (e.g. the key it is stored
        under): it opens only with the same context."""
        nonce = os.urandom(_NONCE)
        return _VERSION + nonce + self._ciphers[0].encrypt(nonce, data, context)

    def open(self, blob: bytes, context: bytes) -> bytes | None:
        """The data, or None when no current or previous key opens it (or it was altered)."""
        if not blob or blob[:1] != _VERSION:
            return None
        nonce, sealed = blob[1 : 1 + _NONCE], blob[1 + _NONCE :]
        for cipher in self._ciphers:
            try:
                return cipher.decrypt(nonce, sealed, context)
            except InvalidTag:
                continue
        return None
