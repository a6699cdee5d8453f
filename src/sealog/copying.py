"""Copying a whole deployment into a new database (SQLite to PostgreSQL, or between any two
stores): every row, the log byte for byte, in one write transaction on the target, so that
a copy that fails half-way leaves the target as empty as it found it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import orjson

from sealog import times
from sealog.store.base import ROW_KINDS, EventRow, LogHead, Org, Store, WriteTx

# Events written to the target at a time (PostgreSQL writes each batch with COPY).
BATCH_EVENTS = 2000
# Tree nodes read from the source at a time.
TREE_PAGE = 10_000

Progress = Callable[[str, int, int], None]
"""Called with an org's id, how many of its events are copied, and how many it has."""


class CopyError(Exception):
    """Raised when a copy cannot be made: the target holds something, the source nothing,
    or the source's log lacks events; the target is left unchanged."""


def copy_deployment(*, source: Store, target: Store,
                    progress: Progress | None = None) -> dict[str, int]:
    """Copies everything source holds into target, which must be empty; returns how many
    of each kind (base.ROW_KINDS) it copied. Raises CopyError, writing nothing.

    Each org's log is copied as far as its head read at the start: events, tree nodes and
    checkpoints beyond it (from writers still running) are left out, so the copy of a log
    is always whole. The rest is read as it is when reached: stop writers first."""
    found = {kind: n for kind, n in target.row_counts().items() if n}
    if found:
        raise CopyError(f"the target database is not empty: it holds {describe(found)}; "
                        "copy into a new, empty database")
    orgs = source.list_orgs()
    if not orgs:
        raise CopyError("the source database holds no org: nothing to copy")
    heads = {org.id: source.log_head(org.id) for org in orgs}
    span = _received_span(source, heads)
    if span is not None:
        target.prepare_for_events(received_from=span[0], received_until=span[1])
    copied = dict.fromkeys(ROW_KINDS, 0)
    with target.writing() as tx:
        for org in orgs:
            _copy_org(source, tx, org, heads[org.id], copied, progress)
        for org_id, email, at in source.login_failures():
            tx.record_login_attempt(org_id, email, at, since=0)
            copied["failed sign-ins"] += 1
        for vkey, created_at, retired_at in source.log_keys():
            tx.insert_log_key(vkey, created_at, retired_at)
            copied["log keys"] += 1
    return copied


def _copy_org(source: Store, tx: WriteTx, org: Org, head: LogHead, copied: dict[str, int],
              progress: Progress | None) -> None:
    tx.create_org(org_id=org.id, name=org.name, created_at=org.created_at)
    tx.lock_log(org.id)
    copied["orgs"] += 1
    for user in source.list_all_users(org.id):
        tx.insert_user(user)
        copied["users"] += 1
    for key in source.list_api_keys(org.id):
        tx.insert_api_key(key)
        copied["API keys"] += 1
    for token_hash, session in source.list_sessions(org.id):
        tx.insert_session(token_hash, session)
        copied["sessions"] += 1
    for export in source.list_exports(org.id):
        tx.insert_export(export)
        copied["exports"] += 1
    for stream in source.list_streams(org.id):  # its secrets still sealed by the streams key
        tx.insert_stream(dataclasses.replace(stream, lease_owner=None, lease_expires_at=None))
        copied["streams"] += 1
    kept = source.get_retention(org.id)
    if kept is not None:
        tx.lock_retention(org.id)
        tx.put_retention(kept)
        copied["retention"] += 1
    for hold in source.list_holds(org.id):
        tx.insert_hold(hold)
        copied["legal holds"] += 1

    if progress is not None:
        progress(org.id, 0, head.size)
    # Events before pruned_before were removed under the retention policy, and a closed
    # log keeps its closing record alone: not copied.
    pruned = 0 if kept is None else kept.pruned_before
    if org.closed_at is not None:
        pruned = head.size - 1
    done = pruned  # events read, each at the index it must have
    batch: list[EventRow] = []
    for row in source.iter_event_rows(org.id, done, head.size):
        if row.index != done:
            break
        batch.append(row)
        done += 1
        if len(batch) == BATCH_EVENTS or done == head.size:
            tx.insert_events(batch)
            batch = []
            if progress is not None:
                progress(org.id, done, head.size)
    if done != head.size:
        raise CopyError(f"org {org.id}: the source's log of {head.size:,} events lacks event "
                        f"{done:,}; run `sealog verify` on the source")
    copied["events"] += done - pruned

    # Every stored node of the tree of head.size leaves: at each level, those of the
    # subtrees it holds whole.
    for level in range(head.size.bit_length()):
        count = head.size >> level
        for start in range(0, count, TREE_PAGE):
            nodes = source.read_tree_range(org.id, level, start, min(start + TREE_PAGE, count))
            tx.insert_tree_nodes(org.id, [(lv, i, h) for (lv, i), h in sorted(nodes.items())])
            copied["tree nodes"] += len(nodes)
    tx.set_log_head(org.id, head)
    for checkpoint in source.iter_checkpoints(org.id):
        if checkpoint.size > head.size:
            break
        tx.insert_checkpoint(checkpoint)
        copied["checkpoints"] += 1
    if org.closed_at is not None:
        tx.close_org(org.id, org.closed_at)


def _received_span(source: Store, heads: dict[str, LogHead]) -> tuple[int, int] | None:
    """The earliest and latest received_at of the orgs' first and last events, None without
    events: received_at rises with the index (an event received out of that order still
    lands somewhere; see prepare_for_events)."""
    found = []
    for org_id, head in heads.items():
        if head.size:
            for index in {0, head.size - 1}:
                for stored in source.iter_events_by_index(org_id, index, index + 1):
                    found.append(times.parse_rfc3339(orjson.loads(stored.doc)["received_at"]))
    return (min(found), max(found)) if found else None


def describe(counts: dict[str, int]) -> str:
    """Counts of kinds of rows in words, e.g. "2 orgs, 1 log key, 0 exports"."""
    return ", ".join(f"{n:,} {kind if n != 1 else kind[:-1]}" for kind, n in counts.items())


__all__ = ["BATCH_EVENTS", "CopyError", "Progress", "copy_deployment", "describe"]
