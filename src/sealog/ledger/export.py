"""Writing an org's events as a verifiable JSON Lines bundle (format: ledger/bundle.py)."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from sealog.ledger import bundle, checkpoint, tree
from sealog.store.base import CheckpointRow, Store, StoredDoc


def bundle_lines(
    docs: Iterable[StoredDoc], proofs: tree.ProofMaker,
    progress: Callable[[int], None] | None = None,
) -> Iterator[bytes]:
    """Entry lines, each with its inclusion proof in the bundle's checkpoint."""
    for count, doc in enumerate(docs, 1):
        yield bundle.entry_line(doc.index, doc.leaf_hash, doc.doc,
                                proof_b64=proofs.inclusion_b64(doc.index))
        if progress is not None and count % 10000 == 0:
            progress(count)


def write_bundle(
    out: IO[bytes],
    *,
    store: Store,
    org_id: str,
    host: str,
    signed: CheckpointRow,
    docs: Iterable[StoredDoc] | None = None,
    count: int | None = None,
    selection: dict[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Writes a bundle of docs (default: every event the checkpoint covers) with proofs
    against signed; returns how many entries it holds."""
    complete = docs is None
    kept = store.get_retention(org_id)
    start = 0 if kept is None else min(kept.pruned_before, signed.size)
    pruned: dict[str, Any] | None = None
    if start:  # the events before were removed under the retention policy
        assert kept is not None
        pruned = {"retained_from_index": start, "purge_record_index": kept.purge_record}
        if complete:
            pruned["hashes"] = [base64.b64encode(h).decode() for h in tree.prefix_hashes(
                store=store, org_id=org_id, size=start)]
    if docs is None:
        docs = store.iter_events_by_index(org_id, start, signed.size)
        count = signed.size - start
    header = bundle.header_line(
        org_id=org_id, origin=checkpoint.origin(host, org_id), tree_size=signed.size,
        complete=complete, count=count, selection=selection or {}, pruned=pruned,
    )
    proofs = tree.ProofMaker(store=store, org_id=org_id, size=signed.size)
    return bundle.write_bundle(out, header=header, entries=bundle_lines(docs, proofs, progress),
                               note=signed.note)
