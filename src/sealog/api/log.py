"""Routes of /api/v1/log: the signed checkpoint, proofs, the verifier key and raw entries."""

from __future__ import annotations

import base64
from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from starlette.responses import Response, StreamingResponse

from sealog import eventlog
from sealog.api.deps import CurrentPrincipal, StoreDep
from sealog.api.problems import Problem
from sealog.api.schemas import PROBLEM_RESPONSES
from sealog.ledger import bundle, checkpoint, tree
from sealog.store.base import CheckpointRow, StorageFull, Store

router = APIRouter(prefix="/api/v1/log", tags=["integrity"])
MAX_ENTRIES = 1000


class InclusionProof(BaseModel):
    index: int
    tree_size: int
    hashes: list[str]


class ConsistencyProof(BaseModel):
    hashes: list[str]


def _b64(hashes: list[bytes]) -> list[str]:
    return [base64.b64encode(h).decode() for h in hashes]


def _latest(request: Request, store: Store, org_id: str) -> CheckpointRow:
    """The org's latest checkpoint, signed now if the log grew; while the disk is full, the
    last one stored (every checkpoint handed out is kept)."""
    app = request.app
    try:
        return checkpoint.sign_latest(store=store, signer=app.state.signer,
                                      host=app.state.settings.log_host, org_id=org_id)
    except StorageFull:
        stored = store.latest_checkpoint(org_id)
        if stored is None:
            raise
        return stored


@router.get("/checkpoint", response_class=Response, responses={
    200: {"content": {"text/plain": {}}, "description": "the latest signed checkpoint"},
    **PROBLEM_RESPONSES})
def get_checkpoint(request: Request, principal: CurrentPrincipal, store: StoreDep) -> Response:
    """The org's latest checkpoint as a C2SP signed note (covers every committed event,
    but while the disk is full the last stored one may cover fewer)."""
    principal.require("events:read")
    row = _latest(request, store, principal.org_id)
    return Response(row.note, media_type="text/plain; charset=utf-8")


@router.get("/key", response_class=Response, responses={
    200: {"content": {"text/plain": {}}, "description": "the verifier key"}})
def get_key(request: Request) -> Response:
    """The verifier key of the log's current signing key: name+hex8+base64."""
    return Response(request.app.state.signer.verifier.text() + "\n",
                    media_type="text/plain; charset=utf-8")


def _tree_size(request: Request, store: Store, org_id: str, tree_size: int | None) -> int:
    return tree_size if tree_size is not None else _latest(request, store, org_id).size


@router.get("/proof/inclusion", response_model=InclusionProof,
            responses={**PROBLEM_RESPONSES, 410: PROBLEM_RESPONSES[422]})
def get_inclusion_proof(
    request: Request,
    principal: CurrentPrincipal,
    store: StoreDep,
    index: Annotated[int | None, Query(ge=0)] = None,
    event_id: str | None = None,
    tree_size: Annotated[int | None, Query(ge=1, description="default: latest checkpoint")]
    = None,
) -> InclusionProof:
    """The RFC 9162 inclusion proof of one event (by index or event_id)."""
    principal.require("events:read")
    if (index is None) == (event_id is None):
        raise Problem(422, "give exactly one of 'index' and 'event_id'", kind="validation")
    if event_id is not None:
        index = eventlog.get_event(store=store, org_id=principal.org_id, event_id=event_id).index
    assert index is not None
    size = _tree_size(request, store, principal.org_id, tree_size)
    try:
        hashes = tree.inclusion_proof(store=store, org_id=principal.org_id, index=index,
                                      size=size)
    except ValueError as exc:
        raise Problem(422, str(exc), kind="validation") from None
    except tree.Pruned as exc:
        raise Problem(410, str(exc), kind="pruned") from None
    return InclusionProof(index=index, tree_size=size, hashes=_b64(hashes))


@router.get("/proof/consistency", response_model=ConsistencyProof,
            responses={**PROBLEM_RESPONSES, 410: PROBLEM_RESPONSES[422]})
def get_consistency_proof(
    principal: CurrentPrincipal,
    store: StoreDep,
    from_: Annotated[int, Query(alias="from", ge=1)],
    to: Annotated[int, Query(ge=1)],
) -> ConsistencyProof:
    """The RFC 9162 consistency proof from the tree of size `from` to that of size `to`."""
    principal.require("events:read")
    try:
        hashes = tree.consistency_proof(store=store, org_id=principal.org_id, old=from_, new=to)
    except ValueError as exc:
        raise Problem(422, str(exc), kind="validation") from None
    except tree.Pruned as exc:
        raise Problem(410, str(exc), kind="pruned") from None
    return ConsistencyProof(hashes=_b64(hashes))


@router.get("/entries", response_class=StreamingResponse, responses={
    200: {"content": {"application/x-ndjson": {}},
          "description": "entry lines in index order (docs/integrity.md)"},
    **PROBLEM_RESPONSES})
def get_entries(
    principal: CurrentPrincipal,
    store: StoreDep,
    start: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_ENTRIES)] = MAX_ENTRIES,
    proofs_for: Annotated[int | None, Query(
        ge=1, description="add each entry's inclusion proof in the tree of this size")] = None,
) -> StreamingResponse:
    """Events in index order as JSON lines holding their exact canonical bytes; from the
    first event retained when start is before it (GET /log/pruned)."""
    principal.require("events:read")
    org_id = principal.org_id
    size = store.log_head(org_id).size
    if proofs_for is not None and proofs_for > size:
        raise Problem(422, f"proofs_for {proofs_for} is larger than the log ({size} events)",
                      kind="validation")
    kept = store.get_retention(org_id)
    if kept is not None and start < kept.pruned_before:  # removed under the policy
        start = kept.pruned_before
    stop = min(start + limit, size if proofs_for is None else proofs_for)
    docs = list(store.iter_events_by_index(org_id, start, stop))
    maker = None if proofs_for is None else tree.ProofMaker(store=store, org_id=org_id,
                                                             size=proofs_for)
    lines = [bundle.entry_line(d.index, d.leaf_hash, d.doc,
                               None if maker is None else maker.inclusion(d.index))
             for d in docs]
    return StreamingResponse(iter(lines), media_type="application/x-ndjson")


class Pruned(BaseModel):
    retained_from_index: int
    hashes: list[str]
    purge_record_index: int | None
    policy_days: int | None


@router.get("/pruned", response_model=Pruned, responses=PROBLEM_RESPONSES)
def get_pruned(principal: CurrentPrincipal, store: StoreDep) -> Response:
    """Where the retained part of the log starts: events before retained_from_index were
    removed under the org's retention policy, ordered by the audit_log.purged event at
    purge_record_index. hashes are the perfect subtrees of the removed events' leaves,
    largest first, with which a verifier checks the rest against a checkpoint."""
    principal.require("events:read")
    kept = store.get_retention(principal.org_id)
    pruned = 0 if kept is None else kept.pruned_before
    hashes = tree.prefix_hashes(store=store, org_id=principal.org_id, size=pruned)
    return Response(orjson.dumps({
        "retained_from_index": pruned, "hashes": _b64(hashes),
        "purge_record_index": None if kept is None else kept.purge_record,
        "policy_days": None if kept is None else kept.days}), media_type="application/json")
