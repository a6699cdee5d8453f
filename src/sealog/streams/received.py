"""Verifying what a stream's receiver got, offline, with the log's pinned key: a webhook
batch in any format (or a directory of them), as `sealog verify --batch` does. Each event
is valid when its content hashes to its leaf hash (OCSF is a rendering: its leaf hash
stands for the original) and its inclusion proof leads to the batch's signed checkpoint."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from sealog import events
from sealog.ledger import checkpoint, merkle
from sealog.ledger.audit import checked_checkpoint
from sealog.ledger.note import Verifier
from sealog.ledger.verify import BAD_SIGNATURE, MODIFIED, ROOT_MISMATCH, Failure, Report
from sealog.streams.formats import CHECKPOINT_TYPE

UNREADABLE = "unreadable"
UNPROVEN = "not proven"
OUT_OF_RANGE = "out of range"


class _Unreadable(ValueError):
    pass


def _parts(body: Any) -> tuple[dict[str, Any], list[tuple[int, str, str, Any]], str]:
    """The batch's checkpoint record, its events as (index, leaf hash, id, content whose
    hash it is or None), and its format."""
    try:
        if isinstance(body, list):  # a CloudEvents batch, its checkpoint last
            records = [e["data"] for e in body if e.get("type") == CHECKPOINT_TYPE]
            if len(records) != 1:
                raise _Unreadable("a CloudEvents batch holds one sealog.checkpoint event")
            return records[0], [(e["sealogindex"], e["sealogleafhash"], e["id"], e["data"])
                                for e in body if e.get("type") != CHECKPOINT_TYPE], \
                "cloudevents"
        if not isinstance(body, dict) or body.get("type") != "sealog.events":
            raise _Unreadable("not a batch of a Sealog stream (sealog.events or CloudEvents)")
        found = body["events"]
        if found and "class_uid" in found[0]:
            return body, [(e["unmapped"]["sealog"]["index"], e["unmapped"]["sealog"][
                "leaf_hash"], e["unmapped"]["sealog"]["id"], None) for e in found], "ocsf"
        return body, [(e["index"], e["leaf_hash"], e["id"], e) for e in found], "sealog"
    except (KeyError, TypeError) as exc:
        raise _Unreadable(f"a field the batch needs is missing or malformed ({exc})") from None


def verify_batch(body: bytes, verifiers: list[Verifier]) -> Report:
    """What one webhook batch proves: each of its events valid, or the failures named."""
    report = Report()
    try:
        record, found, fmt = _parts(orjson.loads(body))
        start, stop, note = record["from_index"], record["to_index"], record["checkpoint"]
        proofs = {p["index"]: p for p in record.get("inclusion_proofs", [])}
    except (orjson.JSONDecodeError, _Unreadable, KeyError, TypeError) as exc:
        report.failures.append(Failure(UNREADABLE, str(exc)))
        return report
    report.total = len(found)
    signed = checked_checkpoint(note, verifiers, report)
    if signed is None:
        return report
    org_id = record.get("org_id")
    if not signed.origin.endswith(f"/sealog/{org_id}"):
        report.failures.append(Failure(BAD_SIGNATURE, f"the checkpoint is of {signed.origin}, "
                                                      f"not of org {org_id}'s log"))
        return report
    report.notes.append(f"Batch of indexes {start}-{stop - 1} ({fmt})")
    if stop > signed.size:
        report.failures.append(Failure(OUT_OF_RANGE, f"the batch reaches index {stop - 1}, "
                                       f"past its checkpoint's size {signed.size}"))
    unproven = 0
    for index, leaf_hex, event_id, content in found:
        failure = _check_event(index, leaf_hex, event_id, content, start, stop, signed,
                               proofs.get(index))
        if failure is None:
            report.valid += 1
        elif failure.kind == UNPROVEN:
            unproven += 1
        else:
            report.failures.append(failure)
    if unproven:
        report.failures.append(Failure(UNPROVEN, f"{unproven} event(s) carry no inclusion "
                                       "proof: the stream sends them with include_proofs on"))
    if fmt == "ocsf":
        report.notes.append("OCSF events are a rendering: each one's leaf hash is proven, "
                            "and GET /api/v1/events/{id} gives the original it hashes")
    return report


def _check_event(index: Any, leaf_hex: Any, event_id: Any, content: Any, start: int,
                 stop: int, signed: checkpoint.Checkpoint, proof: dict[str, Any] | None
                 ) -> Failure | None:
    try:
        leaf = bytes.fromhex(leaf_hex)
    except (TypeError, ValueError):
        return Failure(UNREADABLE, "its leaf hash is not hex", index, event_id)
    if not isinstance(index, int) or not start <= index < stop:
        return Failure(OUT_OF_RANGE, f"outside the batch's indexes {start}-{stop - 1}",
                       index if isinstance(index, int) else None, event_id)
    if content is not None:
        sealed = {k: v for k, v in content.items() if k != "leaf_hash"}
        if events.leaf_hash(events.canonical_bytes(sealed)) != leaf:
            return Failure(MODIFIED, "its content does not hash to its leaf hash", index,
                           event_id)
    if proof is None:
        return Failure(UNPROVEN, "no inclusion proof", index, event_id)
    try:
        if proof["leaf_hash"] != leaf_hex:
            raise merkle.ProofError("the proof is of another leaf")
        hashes = [base64.b64decode(h, validate=True) for h in proof["hashes"]]
        merkle.verify_inclusion(leaf, index, signed.size, hashes, signed.root)
    except (merkle.ProofError, KeyError, TypeError, binascii.Error) as exc:
        return Failure(ROOT_MISMATCH, f"its inclusion proof does not lead to the "
                       f"checkpoint's root ({exc})", index, event_id)
    return None


def batch_files(paths: Iterable[Path]) -> list[Path]:
    """The batch files paths name: files as they are, directories' *.json files by name."""
    found: list[Path] = []
    for path in paths:
        found += sorted(path.glob("*.json")) if path.is_dir() else [path]
    return found


def verify_batches(paths: Iterable[Path], verifiers: list[Verifier]) -> Report:
    """Every batch of paths verified, their reports summed, each failure naming its file."""
    total = Report()
    for path in batch_files(paths):
        try:
            body = path.read_bytes()
        except OSError as exc:
            total.failures.append(Failure(UNREADABLE, f"{path}: {exc.strerror}"))
            continue
        report = verify_batch(body, verifiers)
        total.total += report.total
        total.valid += report.valid
        total.notes += [f"{path.name}: {n}" for n in report.notes]
        total.failures += [Failure(f.kind, f"{path.name}: {f.detail}", f.index, f.event_id)
                           for f in report.failures]
    if not total.notes and not total.failures:
        total.failures.append(Failure(UNREADABLE, "no batch file found"))
    return total
