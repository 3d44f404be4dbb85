"""argon2id hashing, the password policy, and an equal-time answer for unknown accounts."""

from __future__ import annotations

from functools import cache
from importlib import resources

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from authsvc.hashgate import hashing

MIN_LENGTH = 8
MAX_LENGTH = 128


class Hasher:
    """argon2id with the configured cost; verifies, and tells when a stored hash needs a rehash."""

    def __init__(self, time_cost: int, memory_kib: int, parallelism: int) -> None:
        self._parallelism = parallelism
        self._ph = PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            hash_len=32,
            salt_len=16,
            type=Type.ID,
        )
        # A real hash of a random string, so verifying against "no such user" costs the same.
        self._dummy = self._ph.hash("authsvc-dummy-password-for-equal-timing")

    def hash(self, password: str) -> str:
        with hashing(self._parallelism):
            return self._ph.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """True when `password` matches; with no stored hash, spends the same time and fails."""
        try:
            with hashing(self._parallelism):
                matched = self._ph.verify(stored_hash or self._dummy, password)
            return matched and stored_hash is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        try:
            return self._ph.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return True


@cache
def _common_passwords() -> frozenset[str]:
    text = resources.files("authsvc").joinpath("data/common_passwords.txt").read_text()
    return frozenset(
        line.strip().lower() for line in text.splitlines() if line.strip() and line[0] != "#"
    )


def policy_violations(password: str, email: str | None = None) -> list[str]:
    """Reasons `password` fails the policy (empty when it passes)."""
    reasons: list[str] = []
    if len(password) < MIN_LENGTH:
        reasons.append(f"Use at least {MIN_LENGTH} characters.")
    if len(password) > MAX_LENGTH:
        reasons.append(f"Use at most {MAX_LENGTH} characters.")
    lowered = password.lower()
    if lowered in _common_passwords() or len(set(password)) <= 2:
        reasons.append("This password is too common; choose one that is harder to guess.")
    if email:
        local = email.split("@", 1)[0].lower()
        if email.lower() in lowered or (len(local) >= 4 and local in lowered):
            reasons.append("The password must not contain your email address.")
    return reasons
