"""Drift between identities and profiles, found and repaired (`authsvc reconcile`).

The policy lives here, once, whatever the backend; stores only scan, delete and insert.

- An identity past the grace period without a profile, or a pending identity with one, is
  drift; so is a profile past the grace period without an identity. Younger rows may be
  signups in flight.
- A pending identity was never answered 201 (the 201 comes only after `complete`): its client
  was told the signup failed, or got no answer. Repair removes it with any profile it has;
  completing it instead would hand an account to a client that was told there is none.
- A complete identity was answered 201 once: repair gives it its profile back, with the
  username and display name its signup asked for when they are still free (restore_profile;
  login does the same).
- A profile without an identity belongs to nobody: repair removes it, re-checking right before.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from authsvc.errors import Reason, StorageError, UsernameTaken
from authsvc.services import audit
from authsvc.stores import PENDING, Identity, NewProfile, Profile, Stores

log = logging.getLogger("authsvc.reconcile")

ID_LIMIT = 1000
REPAIR_BATCH = 500
KINDS = ("identities_without_profile", "profiles_without_identity", "unfinished_signups")


@dataclass
class Drift:
    """Drifted ids by kind: exact counts, ids kept up to `id_limit` per kind."""

    id_limit: int | None = ID_LIMIT
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    ids: dict[str, list[UUID]] = field(default_factory=lambda: {k: [] for k in KINDS})

    def add(self, kind: str, user_id: UUID) -> None:
        self.counts[kind] += 1
        if self.id_limit is None or len(self.ids[kind]) < self.id_limit:
            self.ids[kind].append(user_id)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def report(self) -> dict[str, Any]:
        """Counts and up to ID_LIMIT ids per kind, as `authsvc reconcile --json` prints them."""
        return {
            k: {"count": self.counts[k], "ids": [str(i) for i in self.ids[k][:ID_LIMIT]]}
            for k in KINDS
        }


def _rows(batches: Iterator[list[Any]]) -> Iterator[Any]:
    for batch in batches:
        yield from batch


def find_drift(stores: Stores, grace_seconds: int, id_limit: int | None = ID_LIMIT) -> Drift:
    """Identities without profiles and profiles without identities (past the grace period),
    and pending identities with a profile: a merge of both sides' id-ordered scans."""
    drift = Drift(id_limit)
    identities = (
        (i, "identity", state, old)
        for i, state, old in _rows(stores.identities.scan(grace_seconds))
    )
    profiles = ((i, "profile", None, old) for i, old in _rows(stores.profiles.scan(grace_seconds)))
    pending: tuple[str, str | None, bool] | None = None  # an identity waiting for its profile
    for user_id, side, state, old in heapq.merge(identities, profiles, key=lambda r: r[0]):
        if side == "identity":
            if pending is not None:
                _identity_alone(drift, *pending)
            pending = (user_id, state, old)
            continue
        if pending is not None and pending[0] == user_id:
            if pending[2] and pending[1] == PENDING:
                drift.add("unfinished_signups", UUID(user_id))
            pending = None
            continue
        if pending is not None:
            _identity_alone(drift, *pending)
            pending = None
        if old:
            drift.add("profiles_without_identity", UUID(user_id))
    if pending is not None:
        _identity_alone(drift, *pending)
    return drift


def _identity_alone(drift: Drift, user_id: str, state: str | None, old: bool) -> None:
    if old:
        drift.add("identities_without_profile", UUID(user_id))


def _batches(ids: list[UUID]) -> Iterator[list[UUID]]:
    for start in range(0, len(ids), REPAIR_BATCH):
        yield ids[start : start + REPAIR_BATCH]


def restore_profile(stores: Stores, identity: Identity) -> Profile | None:
    """Give a complete identity (answered 201 once) its missing profile back, with the
    username and display name its signup asked for when they are still free. None when none
    was created; a row the database refuses is logged and left as drift, so one bad row cannot
    stop a repair."""
    asked = identity.signup_profile
    username = asked.get("username") if isinstance(asked.get("username"), str) else None
    display = asked.get("display_name") if isinstance(asked.get("display_name"), str) else None
    try:
        try:
            return stores.profiles.insert(
                NewProfile(identity.id, identity.email, username, display)
            )
        except UsernameTaken:
            return stores.profiles.insert(NewProfile(identity.id, identity.email, None, display))
    except StorageError as exc:
        if exc.reason is not Reason.UNIQUE_VIOLATION:  # unique: created meanwhile
            log.error(
                "could not recreate a missing profile",
                extra={"user_id": str(identity.id), "reason": str(exc.reason)},
            )
        return None


def repair(
    stores: Stores, drift: Drift, grace_seconds: int, remove_orphans: bool = True
) -> dict[str, int]:
    """Give back what was acknowledged, remove what was not (see the module docstring);
    every action is logged. `drift` must hold every id (find_drift with id_limit=None).
    Without `remove_orphans`, profiles without an identity are left as they are."""
    repaired = {"profiles_created": 0, "identities_removed": 0, "profiles_removed": 0}
    adrift = drift.ids["unfinished_signups"] + drift.ids["identities_without_profile"]
    for batch in _batches(adrift):
        # Where the profiles live apart, a foreign key there may still take a profile along
        # with its identity (Supabase's public.users cascades), unseen: look first, to count.
        had_profiles = set() if stores.profiles.co_located else stores.profiles.present(batch)
        removed, profiles = stores.identities.remove_pending(batch, grace_seconds)
        if removed:
            if profiles is None:  # the profiles live elsewhere: remove what is left of them
                deleted = stores.profiles.delete_many(removed)
                profiles = max(deleted, len(had_profiles.intersection(removed)))
            repaired["identities_removed"] += len(removed)
            repaired["profiles_removed"] += profiles
            log.warning(
                "reconcile removed identities whose signup never finished",
                extra={
                    "count": len(removed),
                    "ids": [str(i) for i in removed],
                    "profiles_deleted_with_them": profiles,
                },
            )
        for identity in stores.identities.signup_profiles(batch):
            if stores.profiles.get(identity.id) is None and restore_profile(stores, identity):
                repaired["profiles_created"] += 1
                log.warning(
                    "reconcile recreated a missing profile", extra={"user_id": str(identity.id)}
                )
    for batch in _batches(drift.ids["profiles_without_identity"] if remove_orphans else []):
        if not stores.profiles.co_located:
            # Re-check against the identities right before deleting.
            held = stores.identities.present(batch)
            batch = [i for i in batch if i not in held]
        removed = stores.profiles.remove_orphans(batch, grace_seconds) if batch else []
        if removed:
            repaired["profiles_removed"] += len(removed)
            log.warning(
                "reconcile removed profiles without an identity",
                extra={"count": len(removed), "ids": [str(i) for i in removed]},
            )
    return repaired


def run(
    stores: Stores, grace_seconds: int, repair_drift: bool, origin: audit.Origin = audit.CLI
) -> tuple[dict[str, Any], bool]:
    """The reconcile report, and whether drift remains afterwards (a repair is audited)."""
    started = time.monotonic()
    drift = find_drift(stores, grace_seconds, id_limit=None if repair_drift else ID_LIMIT)
    report = drift.report()
    repaired: dict[str, int] = {}
    remaining = drift.total
    # Profiles without an identity, in a split layout whose profile database still holds
    # identities of its own (a switch from one database whose identities were not moved), are
    # most likely every profile there: they are not removed until the layout is settled.
    held_back = (
        stores.admin.layout_problems()
        if repair_drift and drift.ids["profiles_without_identity"]
        else []
    )
    if held_back:
        report["held_back"] = {"profiles_without_identity": held_back}
        log.error(
            "reconcile left the profiles without an identity alone: the layout is not settled",
            extra={"count": len(drift.ids["profiles_without_identity"]), "why": held_back},
        )
    if repair_drift and drift.total:
        repaired = repair(stores, drift, grace_seconds, remove_orphans=not held_back)
        remaining = find_drift(stores, grace_seconds).total
        log.warning(
            "reconcile repaired drift", extra={"repaired": repaired, "remaining": remaining}
        )
        audit.record(stores, origin, audit.RECONCILE_REPAIR, **repaired, remaining=remaining)
    report["repaired"] = repaired
    report["remaining"] = remaining
    report["grace_seconds"] = grace_seconds
    report["elapsed_ms"] = round((time.monotonic() - started) * 1000, 1)
    return report, remaining > 0
