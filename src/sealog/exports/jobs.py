"""Export jobs: creating, listing, cancelling, running them, and the workers that do."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import uuid_utils

from sealog import eventlog, search, times
from sealog.events import Redactor
from sealog.exports import writers
from sealog.ingest import record_action
from sealog.ledger import checkpoint, export
from sealog.ledger.note import Signer
from sealog.store.base import (
    Conflict,
    ExportRow,
    NotFound,
    StorageFull,
    Store,
    Unavailable,
    WriteTx,
)

DAY_US = 86_400 * 10**6
log = logging.getLogger("sealog.exports")
_BAD_NAME = re.compile(r"[/\\\x00-\x1f\x7f]")


class ExportError(ValueError):
    """Raised for an export request that cannot be carried out; the message says why."""


class ExportGone(Exception):
    """Raised for the download of an export whose file has expired (HTTP 410)."""


class ExportNotReady(Exception):
    """Raised for the download of an export that is not completed (HTTP 409)."""

    def __init__(self, row: ExportRow):
        self.row = row
        super().__init__(f"export {row.id} is {row.status}, not completed; "
                         "download it once its status is completed")


@dataclass(frozen=True)
class Actor:
    """Who asks, as the audit event about it will name them."""

    id: str
    name: str
    type: str = "api_key"
    email: str | None = None


def _params(row: ExportRow) -> dict[str, Any]:
    return orjson.loads(row.params)


def export_view(row: ExportRow) -> dict[str, Any]:
    """An export as the API shows it."""
    params = _params(row)
    return {
        "id": row.id, "name": row.name, "format": row.format, "status": row.status,
        "progress": round(row.progress, 4), "row_count": row.row_count,
        "size_bytes": row.size_bytes, "sha256": row.sha256, "error": row.error,
        "range": params["range"], "from": params["from"], "to": params["to"],
        "tz": params["tz"], "categories": params["categories"], "q": params["q"],
        "created_at": times.format_rfc3339(row.created_at),
        "started_at": times.format_rfc3339(row.started_at) if row.started_at else None,
        "finished_at": times.format_rfc3339(row.finished_at) if row.finished_at else None,
        "expires_at": times.format_rfc3339(row.expires_at) if row.expires_at else None,
        "download_url": f"/api/v1/exports/{row.id}/download"
        if row.status == "completed" else None,
    }


def file_name(row: ExportRow) -> str:
    """The download's file name: the export's name, made safe, with its extension."""
    safe = re.sub(r"[^A-Za-z0-9._ -]+", "_", row.name).strip(" .") or "export"
    return f"{safe}.{row.format}"


def audit_export(tx: WriteTx, redactor: Redactor, org_id: str, actor: Actor, action: str,
                 row: ExportRow, description: str) -> None:
    """Records an export's creation, cancellation or download in the org's own log, in tx."""
    # Cancelling is not in the catalog: it names its category and badge itself.
    uncatalogued = action == "audit_log.export_cancelled"
    record_action(
        tx=tx, redactor=redactor, org_id=org_id, action=action,
        actor={"id": actor.id, "name": actor.name, "type": actor.type, "email": actor.email},
        category="user_actions" if uncatalogued else None,
        event_type="Audit Access" if uncatalogued else None, description=description,
        resource={"type": "export", "id": row.id, "name": row.name},
        metadata={"format": row.format, "params": _params(row)},
    )


def create_export(
    *, store: Store, redactor: Redactor, org_id: str, actor: Actor, name: str, format: str,
    range_preset: str | None = None, start: str | None = None, end: str | None = None,
    tz: str | None = None, categories: list[str] | None = None, q: str | None = None,
    expires_days: float = 7,
) -> ExportRow:
    """Queues an export of the events that match now; raises ExportError, TimeError,
    FilterError or SearchSyntaxError for a bad request. Creating it is an audit event."""
    if not isinstance(name, str) or not name.strip():
        raise ExportError("name must not be empty")
    if len(name) > 200:
        raise ExportError("name must be at most 200 characters")
    if _BAD_NAME.search(name) or name.strip() in (".", ".."):
        raise ExportError("name must not contain path separators or control characters")
    if format not in writers.FORMATS:
        raise ExportError(f"unknown format {format!r}; use one of {', '.join(writers.FORMATS)}")
    now = times.now_us()
    flt = search.build_filter(org_id=org_id, range_preset=range_preset, start=start, end=end,
                              tz=tz, categories=categories or [], q=q, now_us=now)
    params = {
        "range": range_preset or "24h", "from": start, "to": end, "tz": tz,
        "categories": list(flt.categories), "q": q,
        "start_us": flt.time_range.start_us, "end_us": flt.time_range.end_us,
        "expires_us": int(expires_days * DAY_US),
    }
    row = ExportRow(
        id=str(uuid_utils.uuid7()), org_id=org_id, name=name.strip(), format=format,
        params=orjson.dumps(params).decode(), snapshot_size=store.log_head(org_id).size,
        status="queued", progress=0.0, row_count=None, size_bytes=None, sha256=None,
        error=None, created_by=actor.id, created_at=now, started_at=None, finished_at=None,
        expires_at=None, lease_owner=None, lease_expires_at=None, attempts=0, file_path=None,
    )
    with store.writing() as tx:  # no export without its audit event
        tx.insert_export(row)
        audit_export(tx, redactor, org_id, actor, "audit_log.exported", row,
                     f"Queued {format.upper()} export {row.name}")
    return row


def get_export(*, store: Store, org_id: str, export_id: str) -> ExportRow:
    row = store.get_export(org_id, export_id)
    if row is None:
        raise NotFound(f"export {export_id!r} does not exist")
    return row


def cancel_export(*, store: Store, redactor: Redactor, org_id: str, export_id: str,
                  actor: Actor) -> ExportRow:
    """Cancels a queued or running export (its worker stops at its next heartbeat)."""
    with store.writing() as tx:
        row = tx.cancel_export(org_id=org_id, export_id=export_id, now=times.now_us())
        audit_export(tx, redactor, org_id, actor, "audit_log.export_cancelled", row,
                     f"Cancelled export {row.name}")
    return row


def open_download(*, store: Store, redactor: Redactor, org_id: str, export_id: str,
                  actor: Actor) -> tuple[ExportRow, Path]:
    """The completed export's file; raises NotFound, ExportNotReady or ExportGone.
    Downloading is an audit event."""
    row = get_export(store=store, org_id=org_id, export_id=export_id)
    if row.status == "expired":
        raise ExportGone(f"export {row.id} expired and its file was deleted")
    if row.status != "completed" or row.file_path is None:
        raise ExportNotReady(row)
    path = Path(row.file_path)
    if not path.exists():
        raise ExportGone(f"the file of export {row.id} is gone")
    with store.writing() as tx:
        audit_export(tx, redactor, org_id, actor, "audit_log.export_downloaded", row,
                     f"Downloaded export {row.name}")
    return row, path


def filter_of(row: ExportRow) -> search.EventFilter:
    """The export's filter, as fixed when it was created (time window and snapshot)."""
    params = _params(row)
    return search.EventFilter(
        org_id=row.org_id,
        time_range=times.TimeRange(params["start_us"], params["end_us"]),
        categories=tuple(params["categories"]),
        query=search.parse_query(params["q"]),
        max_index=row.snapshot_size,
    )


def write_file(
    *, store: Store, org_id: str, format: str, flt: search.EventFilter, path: Path,
    signer: Signer | None, host: str, selection: dict[str, Any],
    progress: Callable[[int], None] | None = None, total: int | None = None,
) -> int:
    """Writes the events flt selects to path in format, oldest first (a bundle: in index
    order); returns how many. total, when the caller has counted them, saves counting. A
    CSV or Excel file of a window reaching before the retained events says they were removed
    (a bundle's header does)."""
    retained = eventlog.retained_from(store, flt) if format in ("csv", "xlsx") else None
    notice = None if retained is None else writers.removed_notice(retained)
    if format == "csv":
        return writers.write_csv(path, store.iter_events_ascending(flt), progress,
                                 notice=notice)
    if total is None:
        total = store.count_events(flt)
    if format == "xlsx":
        return writers.write_xlsx(path, store.iter_events_ascending(flt), total=total,
                                  progress=progress, notice=notice)
    if signer is None:
        raise ExportError("a JSON Lines bundle needs the log's signing key")
    # Index order is what the bundle's proofs fix and its verifier checks; producers may
    # send events out of time order.
    docs = store.iter_events_in_index_order(flt)
    signed = checkpoint.sign_latest(store=store, signer=signer, host=host, org_id=org_id)
    with path.open("wb") as out:
        return export.write_bundle(
            out, store=store, org_id=org_id, host=host, signed=signed,
            docs=(d for d in docs if d.index < signed.size), count=total,
            selection=selection, progress=progress,
        )


def selection_of(row: ExportRow) -> dict[str, Any]:
    """What the export was asked for, as its bundle header records it."""
    return {k: v for k, v in _params(row).items()
            if k in ("range", "from", "to", "tz", "categories", "q")}


class Worker:
    """Claims export jobs from the database and writes them, renewing its lease as it goes.

    A worker that dies leaves its lease to expire; another then restarts the job from the
    start, into a new temporary file, so no row is doubled or lost.
    """

    def __init__(self, *, store: Store, folder: Path, signer: Signer | None, host: str,
                 lease_seconds: float = 30, poll_seconds: float = 1.0):
        self.store = store
        self.folder = folder
        self.signer = signer
        self.host = host
        self.lease_us = int(lease_seconds * 10**6)
        self.poll = poll_seconds
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="sealog-export-worker",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def run(self) -> None:
        """Works until stopped: expires old files, then runs jobs as they come."""
        while not self._stop.is_set():
            try:
                self.expire()
                worked = self.run_one()
            except StorageFull as exc:  # a claim is a write: it waits for disk space
                log.error("export worker: %s; trying again", exc)
                worked = False
            except Exception:  # noqa: BLE001 - the worker outlives one bad round
                log.exception("export worker: the round failed; trying again")
                worked = False
            if not worked:
                self._stop.wait(self.poll)

    def expire(self) -> None:
        for row in self.store.expire_exports(times.now_us()):
            if row.file_path:
                Path(row.file_path).unlink(missing_ok=True)

    def run_one(self) -> bool:
        """Claims and runs one job; False when there was none."""
        row = self.store.claim_export(owner=self.owner, now=times.now_us(),
                                      lease_us=self.lease_us)
        if row is None:
            return False
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in self.folder.glob(f"{row.id}.{row.format}.*.part"):
            stale.unlink(missing_ok=True)  # left by a worker whose lease ran out
        final = self.folder / f"{row.id}.{row.format}"
        part = self.folder / f"{row.id}.{row.format}.{self.owner.replace(':', '-')}.part"
        flt = filter_of(row)
        total = self.store.count_events(flt)

        def heartbeat(done: int) -> None:
            if not self.store.renew_export(export_id=row.id, owner=self.owner,
                                           now=times.now_us(), lease_us=self.lease_us,
                                           progress=min(done / max(total, 1), 0.99)):
                raise _LeaseLost()

        try:
            count = write_file(store=self.store, org_id=row.org_id, format=row.format,
                               flt=flt, path=part, signer=self.signer, host=self.host,
                               selection=selection_of(row), progress=heartbeat, total=total)
            digest, size = _sha256(part)
            os.replace(part, final)
        except _LeaseLost:
            part.unlink(missing_ok=True)
            return True
        except Unavailable as exc:  # not the job's fault: its lease runs out and it runs again
            log.error("export %s stopped, the database could not answer: %s", row.id, exc)
            part.unlink(missing_ok=True)
            return True
        except Exception as exc:  # noqa: BLE001 - any failure is recorded on the job
            log.exception("export %s failed", row.id)
            part.unlink(missing_ok=True)
            error = DISK_FULL_ERROR if _is_disk_full(exc) else f"{type(exc).__name__}: {exc}"
            try:
                self.store.finish_export(export_id=row.id, owner=self.owner, status="failed",
                                         finished_at=times.now_us(), error=error)
            except (StorageFull, Unavailable):  # its lease runs out and it runs again
                log.error("export %s: its failure could not be stored", row.id)
            return True
        now = times.now_us()
        try:
            done = self.store.finish_export(
                export_id=row.id, owner=self.owner, status="completed", finished_at=now,
                progress=1.0, row_count=count, size_bytes=size, sha256=digest,
                file_path=str(final), expires_at=now + _params(row)["expires_us"])
        except (StorageFull, Unavailable):  # its lease runs out and a worker runs it again
            log.error("export %s: its completion could not be stored", row.id)
            done = False
        if not done:
            final.unlink(missing_ok=True)  # cancelled, taken over, or not recorded
        return True


DISK_FULL_ERROR = "the server's disk is full; queue the export again once space is freed"


def _is_disk_full(exc: Exception) -> bool:
    return isinstance(exc, StorageFull) or (
        isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT))


class _LeaseLost(Exception):
    """The job was cancelled or taken over: stop writing it."""


def _sha256(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


__all__ = ["Conflict", "ExportError", "ExportGone", "ExportNotReady", "Worker",
           "cancel_export", "create_export", "export_view", "file_name", "open_download"]
