"""Retention and legal holds: how long an org keeps its events, and the purge that removes
what its policy no longer keeps, a prefix of the log at a time, every remaining event
still provable. What the API, the CLI and the background purger call.

A purge removes the events before index P, where P is the first event received at or
after the policy's cutoff (received time never falls as the index rises, so every event
before P is older), and no later than the first event a legal hold covers. It is ordered
by an `audit_log.purged` event in the org's own log, written with the decision, and then
carried out in small transactions, each of which checks the holds again.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import uuid_utils

from sealog import times
from sealog.events import Redactor
from sealog.ingest import record_action
from sealog.ledger import checkpoint, merkle
from sealog.ledger.note import Signer
from sealog.store.base import (
    Conflict,
    HoldRow,
    NotFound,
    RetentionRow,
    Store,
    WriteTx,
    wait_after,
)

log = logging.getLogger("sealog.retention")

DAY_US = 86_400 * 10**6
MAX_DAYS = 36_500  # a hundred years: beyond it, keep forever says what is meant
PURGED = "audit_log.purged"


class RetentionError(ValueError):
    """A policy or hold the org cannot have, naming why."""


@dataclass(frozen=True)
class PurgeStep:
    """What one purge transaction did: ordered a purge (recorded at `record`, to remove
    [start, stop)), or removed [start, stop) of one under way."""

    org_id: str
    ordered: bool
    start: int
    stop: int
    record: int | None = None


def _active(holds: list[HoldRow]) -> list[HoldRow]:
    return [h for h in holds if h.released_at is None]


def _held_ranges(holds: list[HoldRow]) -> list[tuple[int | None, int | None]]:
    return [(h.occurred_from, h.occurred_to) for h in _active(holds)]


def view(store: Store, org_id: str, *, min_days: int | None) -> dict[str, Any]:
    """The org's policy, what purges have removed, and its holds, as the API shows them."""
    row = store.get_retention(org_id) or RetentionRow(org_id)
    return {
        "days": row.days,
        "locked": row.locked_at is not None,
        "locked_at": time_text(row.locked_at),
        "min_days": min_days,
        "retained_from_index": row.pruned_before,
        "purge": ({"to_index": row.purge_to, "record_index": row.purge_record}
                  if row.purge_to > row.pruned_before else None),
        "last_purge_record_index": row.purge_record,
        "holds": [hold_view(h) for h in store.list_holds(org_id)],
    }


def hold_view(row: HoldRow) -> dict[str, Any]:
    return {
        "id": row.id, "name": row.name, "reason": row.reason,
        "occurred_from": time_text(row.occurred_from), "occurred_to": time_text(row.occurred_to),
        "whole_log": row.occurred_from is None and row.occurred_to is None,
        "created_by": row.created_by, "created_at": time_text(row.created_at),
        "released_at": time_text(row.released_at), "released_by": row.released_by,
        "active": row.released_at is None,
    }


def time_text(us: int | None) -> str | None:
    return None if us is None else times.format_rfc3339(us)


def check_days(days: Any, min_days: int | None) -> int | None:
    """days as a policy takes it (None: keep forever); raises RetentionError naming what
    is wrong with it."""
    if days is None:
        return None
    if isinstance(days, bool) or not isinstance(days, int):
        raise RetentionError(f"days: a whole number of days, or null to keep forever; "
                             f"not {days!r}")
    if not 1 <= days <= MAX_DAYS:
        raise RetentionError(f"days: between 1 and {MAX_DAYS}, or null to keep forever; "
                             f"not {days}")
    if min_days is not None and days < min_days:
        raise RetentionError(
            f"days: at least {min_days}, the least this deployment keeps events "
            f"(SEALOG_RETENTION_MIN_DAYS); not {days}")
    return days


def set_policy(*, store: Store, redactor: Redactor, org_id: str, actor: dict[str, Any],
               days: int | None, lock: bool = False, min_days: int | None = None
               ) -> RetentionRow:
    """Keeps the org's events `days` days (None: forever) and, with lock, locks the policy;
    a locked policy can only be lengthened and stays locked. Raises RetentionError for days
    it cannot take, Conflict for a shorter one when locked."""
    days = check_days(days, min_days)
    with store.writing() as tx:
        row = tx.lock_retention(org_id)
        if row.locked_at is not None:
            if row.days is None and days is not None or (
                    days is not None and row.days is not None and days < row.days):
                raise Conflict(
                    f"the policy is locked at {_days_text(row.days)}: it can only be "
                    "lengthened")
        now = times.now_us()
        locked_at = row.locked_at or (now if lock else None)
        changed = dataclasses.replace(row, days=days, locked_at=locked_at, updated_at=now)
        tx.put_retention(changed)
        record_action(tx=tx, redactor=redactor, org_id=org_id, action="retention.changed",
                      actor=actor, resource={"type": "retention_policy", "id": org_id},
                      metadata={"days": days, "days_before": row.days,
                                "locked": locked_at is not None,
                                "locked_now": row.locked_at is None and lock})
    return changed


def _days_text(days: int | None) -> str:
    return "keep forever" if days is None else f"{days} days"


def place_hold(*, store: Store, redactor: Redactor, org_id: str, actor: dict[str, Any],
               name: str, reason: str, occurred_from: str | None = None,
               occurred_to: str | None = None) -> HoldRow:
    """Places a legal hold on the whole log, or on the events that occurred in [from, to)
    (RFC 3339; either open). Raises RetentionError naming a setting it cannot take."""
    name, reason = name.strip(), reason.strip()
    if not name or len(name) > 200:
        raise RetentionError("name: 1 to 200 characters")
    if not reason or len(reason) > 2000:
        raise RetentionError("reason: 1 to 2000 characters; say why the events are held")
    start = _parsetime_text("from", occurred_from)
    stop = _parsetime_text("to", occurred_to)
    if start is not None and stop is not None and start >= stop:
        raise RetentionError("from: must come before to")
    now = times.now_us()
    row = HoldRow(org_id=org_id, id=f"hold_{uuid_utils.uuid7().hex}", name=name, reason=reason,
                  occurred_from=start, occurred_to=stop, created_by=actor.get("id"),
                  created_at=now)
    with store.writing() as tx:
        tx.lock_retention(org_id)  # a purge deciding meanwhile sees this hold, or is done
        tx.insert_hold(row)
        _record_hold(tx, redactor, row, actor, "legal_hold.placed")
    return row


def release_hold(*, store: Store, redactor: Redactor, org_id: str, actor: dict[str, Any],
                 hold_id: str) -> HoldRow:
    """Releases a hold; raises NotFound, or Conflict when it was released before."""
    with store.writing() as tx:
        tx.lock_retention(org_id)
        row = tx.lock_hold(org_id, hold_id)
        if row is None:
            raise NotFound(f"legal hold {hold_id!r} does not exist")
        if row.released_at is not None:
            raise Conflict(f"legal hold {hold_id!r} was released at "
                           f"{time_text(row.released_at)}")
        released = dataclasses.replace(row, released_at=times.now_us(),
                                       released_by=actor.get("id"))
        tx.update_hold(released)
        _record_hold(tx, redactor, released, actor, "legal_hold.released")
    return released


def _record_hold(tx: WriteTx, redactor: Redactor, row: HoldRow, actor: dict[str, Any],
                 action: str) -> None:
    record_action(tx=tx, redactor=redactor, org_id=row.org_id, action=action, actor=actor,
                  resource={"type": "legal_hold", "id": row.id, "name": row.name},
                  metadata={"reason": row.reason, "occurred_from": time_text(row.occurred_from),
                            "occurred_to": time_text(row.occurred_to)})


def _parsetime_text(name: str, text: str | None) -> int | None:
    if text is None or text == "":
        return None
    try:
        return times.parse_rfc3339(text)
    except ValueError as exc:
        raise RetentionError(f"{name}: an RFC 3339 time, e.g. 2026-01-31T00:00:00Z ({exc})"
                             ) from None


def _first_received_from(tx: WriteTx, org_id: str, start: int, stop: int,
                         cutoff: int) -> int:
    """The first index in [start, stop) of an event received at or after cutoff (stop when
    none is): a binary search, received time never falling as the index rises."""
    lo, hi = start, stop
    while lo < hi:
        mid = (lo + hi) // 2
        received = tx.received_at(org_id, mid)
        if received is None:  # gone (a document removed outside the policy): look past it
            raise RetentionError(f"the event at index {mid} is missing; `sealog verify` "
                                 "names what else is; no purge until it is explained")
        if received < cutoff:
            lo = mid + 1
        else:
            hi = mid
    return lo


def purge_step(*, store: Store, redactor: Redactor, org_id: str, now: int | None = None,
               batch: int | None = None) -> PurgeStep | None:
    """One purge transaction for the org: removes the next batch (store.purge_batch events
    unless given) of a purge under way, or orders the purge its policy now asks for; None
    when there is nothing to do."""
    now = times.now_us() if now is None else now
    batch = batch or store.purge_batch
    with store.writing() as tx:
        row = tx.lock_retention(org_id)
        # Read after the lock: a hold is placed under it, so none placed since is missed.
        held = _active(tx.list_holds(org_id))
        whole = any(h.occurred_from is None and h.occurred_to is None for h in held)
        ranges = _held_ranges(held)
        if row.purge_to > row.pruned_before:
            stop, purge_to = min(row.purge_to, row.pruned_before + batch), row.purge_to
            first_held = row.pruned_before if whole else tx.first_index_occurred_in(
                org_id, row.pruned_before, stop, ranges)
            if first_held is not None:
                # A hold placed since the purge was ordered: what it covers stays, and so
                # does everything after it (a purge removes a prefix of the log alone).
                stop = purge_to = first_held
                log.info("org %s: the purge to index %d stops at %d, held", org_id,
                         row.purge_to, stop)
            if stop > row.pruned_before:
                tx.delete_events(org_id, row.pruned_before, stop)
                tx.delete_tree_nodes(org_id, merkle.prunable_ranges(
                    row.pruned_before, stop, _SignedSizes(tx, org_id, row.pruned_before,
                                                          stop, batch).first))
            tx.put_retention(dataclasses.replace(row, pruned_before=stop, purge_to=purge_to,
                                                 updated_at=now))
            return PurgeStep(org_id, False, row.pruned_before, stop)
        if row.days is None or whole:
            return None
        head = tx.lock_log(org_id)
        # Only events a signed checkpoint covers go, so that none is removed unproven, and
        # so that no checkpoint is signed later of a size inside what is removed: one
        # signing now took its last checkpoint before this one (the signing lock).
        latest = tx.lock_checkpoints(org_id)
        signed = 0 if latest is None else latest.size
        cutoff = now - row.days * DAY_US
        target = _first_received_from(tx, org_id, row.pruned_before, min(head.size, signed),
                                      cutoff)
        first_held = tx.first_index_occurred_in(org_id, row.pruned_before, target, ranges)
        if first_held is not None:
            target = first_held
        if target <= row.pruned_before:
            return None
        record_index = head.size
        record_action(
            tx=tx, redactor=redactor, org_id=org_id, action=PURGED,
            actor={"id": "sealog", "name": "Sealog retention", "type": "system"},
            resource={"type": "audit_log", "id": org_id},
            description=(f"Events at indexes {row.pruned_before} to {target - 1} removed "
                         f"under the retention policy ({row.days} days)"),
            metadata={"from_index": row.pruned_before, "to_index": target,
                      "count": target - row.pruned_before, "retained_from_index": target,
                      "policy_days": row.days, "cutoff": times.format_rfc3339(cutoff)})
        tx.put_retention(dataclasses.replace(row, purge_to=target, purge_record=record_index,
                                             updated_at=now))
        return PurgeStep(org_id, True, row.pruned_before, target, record_index)


class _SignedSizes:
    """The org's checkpoint sizes as a purge transaction from start to stop asks for them:
    those near the purged range read at once, the first one past each farther size apart."""

    def __init__(self, tx: WriteTx, org_id: str, start: int, stop: int, batch: int):
        self.tx, self.org_id, self.stop = tx, org_id, stop
        self.near = max(0, start - 16 * batch)
        self.sizes = tx.checkpoint_sizes(org_id, self.near, stop)
        self.far: dict[int, int | None] = {}

    def first(self, at_least: int) -> int | None:
        """The smallest checkpoint size at least at_least and below stop, if any."""
        if at_least >= self.near:
            i = bisect.bisect_left(self.sizes, at_least)
            return self.sizes[i] if i < len(self.sizes) else None
        if at_least not in self.far:
            found = self.tx.checkpoint_sizes(self.org_id, at_least, self.stop, limit=1)
            self.far[at_least] = found[0] if found else None
        return self.far[at_least]


def purge(*, store: Store, redactor: Redactor, org_id: str, now: int | None = None,
          batch: int | None = None, pause: float = 0,
          stop: threading.Event | None = None) -> list[PurgeStep]:
    """Purges what the org's policy no longer keeps, to the end (or until stop is set),
    at least `pause` seconds between transactions (store.wait_after); the steps taken."""
    stopping = stop or threading.Event()
    steps = []
    while not stopping.is_set():
        started = time.monotonic()
        step = purge_step(store=store, redactor=redactor, org_id=org_id, now=now, batch=batch)
        if step is None:
            break
        steps.append(step)
        if step.start == step.stop and not step.ordered:
            break
        wait_after(started, pause, stopping)
    if steps:
        _release(store, pause, stopping)
    return steps


def _release(store: Store, pause: float, stop: threading.Event) -> None:
    released = store.release_emptied_storage(pause=pause, stop=stop)
    if released:
        log.info("purges emptied and released: %s", ", ".join(released))


class Purger:
    """A thread that purges every org's log as its policy asks, in serve and in worker:
    each round every `interval` seconds, a transaction at a time, `pause` seconds apart."""

    def __init__(self, *, store: Store, redactor: Redactor, signer: Signer, host: str,
                 interval: float = 600, pause: float = 0.02, batch: int | None = None):
        self.store, self.redactor, self.signer, self.host = store, redactor, signer, host
        self.interval, self.pause, self.batch = interval, pause, batch
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="sealog-purger", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def run_once(self) -> int:
        """One round over every org with work; how many transactions it took."""
        steps = 0
        for org_id in self.store.retention_work():
            if self._stop.is_set():
                break
            try:
                # A purge removes only signed events: sign what the checkpointer may not
                # have yet (sealog worker runs none).
                checkpoint.sign_latest(store=self.store, signer=self.signer, host=self.host,
                                       org_id=org_id)
                steps += len(purge(store=self.store, redactor=self.redactor, org_id=org_id,
                                   batch=self.batch, pause=self.pause, stop=self._stop))
            except (RetentionError, checkpoint.CheckpointError) as exc:
                log.warning("org %s: no purge: %s", org_id, exc)
        return steps

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 - the purger outlives one bad round
                log.exception("purger: the round failed; trying again next round")
            self._stop.wait(self.interval)
