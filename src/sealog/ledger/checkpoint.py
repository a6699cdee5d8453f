"""Checkpoints: C2SP tlog-checkpoint bodies, signed as notes, each checked against the last."""

from __future__ import annotations

import base64
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from sealog import times
from sealog.ledger import merkle, tree
from sealog.ledger.note import NoteError, Signer, Verifier, open_note
from sealog.store.base import CheckpointRow, StorageFull, Store

log = logging.getLogger("sealog.checkpoints")


class CheckpointError(ValueError):
    """Raised for a malformed checkpoint, or one that is not consistent with the last."""


def origin(host: str, org_id: str) -> str:
    """The log's origin line: `<host>/sealog/<org_id>`."""
    return f"{host}/sealog/{org_id}"


def body(origin_line: str, size: int, root: bytes) -> str:
    """A tlog-checkpoint body: origin, tree size and base64 root, one per line."""
    return f"{origin_line}\n{size}\n{base64.b64encode(root).decode()}\n"


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint whose signature has been checked."""

    origin: str
    size: int
    root: bytes
    note: str
    key: Verifier


def parse_body(text: str) -> tuple[str, int, bytes]:
    """(origin, size, root) of a checkpoint body; raises CheckpointError."""
    lines = text.split("\n")
    if len(lines) < 4 or lines[-1] != "":
        raise CheckpointError("a checkpoint body has origin, size and root lines")
    origin_line, size_text, root_text = lines[0], lines[1], lines[2]
    if (not origin_line or not (size_text.isascii() and size_text.isdigit())
            or (size_text != "0" and size_text[0] == "0")):
        raise CheckpointError("the checkpoint's origin or size line is malformed")
    try:
        root = base64.b64decode(root_text, validate=True)
    except ValueError:
        raise CheckpointError("the checkpoint's root is not base64") from None
    if len(root) != 32:
        raise CheckpointError("the checkpoint's root is not 32 bytes")
    return origin_line, int(size_text), root


def open_checkpoint(note: str, verifiers: list[Verifier]) -> Checkpoint:
    """The checkpoint in a signed note; raises SignatureError or CheckpointError."""
    try:
        text, key = open_note(note, verifiers)
    except NoteError as exc:
        raise CheckpointError(str(exc)) from None
    origin_line, size, root = parse_body(text)
    return Checkpoint(origin_line, size, root, note, key)


def load_signer(path: Path, name: str) -> Signer:
    """The log's signing key from path, made there (mode 0600) on first use."""
    if path.exists():
        return Signer.parse(path.read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    signer = Signer.generate(name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(signer.text() + "\n")
    return signer


def sign_latest(*, store: Store, signer: Signer, host: str, org_id: str,
                covering: int | None = None) -> CheckpointRow:
    """The org's latest checkpoint, signing a new one first if the log has grown (or, given
    covering, only if the latest is of fewer than that many events).

    The new tree is proven consistent with the last checkpoint before it is signed, and
    stored only if that is still the last once the org's signing lock is taken (else it is
    signed again, against the newer one): in size order, each checkpoint was checked
    against the one before it. Raises CheckpointError when the tree is not consistent
    with the last checkpoint (the stored log was rewritten).
    """
    while True:
        last = store.latest_checkpoint(org_id)
        if last is not None and covering is not None and last.size >= covering:
            return last
        head = store.log_head(org_id)
        if last is not None and last.size >= head.size:
            return last
        root = tree.head_root(head)
        if last is not None and last.size > 0:
            try:
                _check_consistent(store, org_id, last, head.size, root)
            except LookupError:
                # A purge deleted tree nodes these reads wanted. It reaches only a size
                # signed after them, so start again from that checkpoint.
                if _size(store.latest_checkpoint(org_id)) == _size(last):
                    raise
                continue
        note = signer.sign(body(origin(host, org_id), head.size, root))
        # The lock covers only the check and the insert. The reads above need no lock: a
        # committed head, and tree nodes, which never change once stored but for a purge's
        # deletes (handled above). Made under the lock, on other connections, they would
        # hold up ingest on SQLite (the writer lock) and, on PostgreSQL, could wait for a
        # pooled connection while every other one is held by a signer waiting for the lock.
        # Not waiting for the disk: a checkpoint is a pure function of a log already
        # committed (Ed25519 signatures are deterministic), so one lost in a crash is
        # signed again byte for byte, and ingest's commits do not wait behind the signers'.
        with store.writing(durable=False) as tx:
            latest = tx.lock_checkpoints(org_id)
            if _size(latest) == _size(last):
                row = CheckpointRow(org_id, head.size, root, note, signer.verifier.text(),
                                    times.now_us())
                if tx.insert_checkpoint(row):
                    return row
        # Another signer stored a checkpoint meanwhile: start again from it.


def _size(row: CheckpointRow | None) -> int:
    return -1 if row is None else row.size


def _check_consistent(store: Store, org_id: str, last: CheckpointRow, size: int,
                      root: bytes) -> None:
    """Raises CheckpointError unless the tree of size `size` and root `root` extends the
    one last signed."""
    proof = tree.consistency_proof(store=store, org_id=org_id, old=last.size, new=size)
    try:
        merkle.verify_consistency(last.size, size, proof, last.root, root)
    except merkle.ProofError as exc:
        raise CheckpointError(
            f"refusing to sign: the tree of size {size} is not consistent with the "
            f"checkpoint of size {last.size} ({exc})"
        ) from None


class Checkpointer:
    """Signs a checkpoint for every org whose log grew, soon after it grew (in a thread)."""

    def __init__(self, *, store: Store, signer: Signer, host: str, interval: float = 1.0):
        self.store = store
        self.signer = signer
        self.host = host
        self.interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._disk_full = False
        self._thread = threading.Thread(target=self._run, name="sealog-checkpointer",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def poke(self) -> None:
        """Says the log grew; a checkpoint follows within the interval."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)

    def run_once(self) -> None:
        for org_id in self.store.orgs_behind_checkpoint():
            try:
                sign_latest(store=self.store, signer=self.signer, host=self.host, org_id=org_id)
            except CheckpointError as exc:
                # Never sign over a rewritten log; keep saying so until an operator looks.
                log.error("org %s: %s", org_id, exc)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.run_once()
            except StorageFull as exc:  # signed in a later round, once space is freed
                if not self._disk_full:
                    log.error("checkpoints wait for disk space: %s", exc)
                self._disk_full = True
            except Exception:  # noqa: BLE001 - the thread must outlive one bad round
                log.exception("checkpointing failed")
            else:
                if self._disk_full:
                    log.warning("checkpoints are stored again: disk space was freed")
                    self._disk_full = False
            self._stop.wait(min(self.interval, 0.5))
