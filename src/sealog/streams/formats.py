"""What a stream sends, in its format: each event (`sealog`: as the API returns it; `ocsf`;
`cloudevents`), and the batch's checkpoint record (the signed checkpoint that covers the
batch, and with include_proofs each event's inclusion proof against it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from sealog.eventlog import event_json
from sealog.store.base import StoredDoc
from sealog.streams import ocsf

FORMATS = ("sealog", "ocsf", "cloudevents")
CLOUDEVENTS_BATCH = "application/cloudevents-batch+json"
# The CloudEvents type of an event is this and its action; of a batch's checkpoint, this.
CLOUDEVENT_TYPE_PREFIX = "sealog."
CHECKPOINT_TYPE = "sealog.checkpoint"


@dataclass(frozen=True)
class Sent:
    """One event of a batch: as stored, and what the stream sends of it."""

    stored: StoredDoc
    body: bytes


def render(fmt: str, stored: StoredDoc, source: str) -> bytes:
    """The event in format fmt; source is the log's origin (`<host>/sealog/<org>`), which
    CloudEvents name as the event's source."""
    if fmt == "sealog":
        return event_json(stored)
    doc = orjson.loads(stored.doc)
    if fmt == "ocsf":
        return orjson.dumps(ocsf.to_ocsf(doc, stored.leaf_hash.hex()))
    resource = doc["resource"] or {}
    head = orjson.dumps({
        "specversion": "1.0", "id": doc["id"], "source": source,
        "type": CLOUDEVENT_TYPE_PREFIX + doc["action"], "time": doc["occurred_at"],
        **({"subject": f"{resource['type']}/{resource['id']}"}
           if resource.get("type") and resource.get("id") else {}),
        "datacontenttype": "application/json",
        "sealogindex": stored.index, "sealogleafhash": stored.leaf_hash.hex(),
    })
    return head[:-1] + b',"data":' + event_json(stored) + b"}"


def checkpoint_record(*, org_id: str, stream_id: str, start: int, stop: int, note: str,
                      proofs: list[dict[str, Any]] | None) -> dict[str, Any]:
    """What a batch says of itself: the index range it covers, the signed checkpoint (a
    C2SP note) that covers its last event, and the inclusion proofs asked for."""
    record: dict[str, Any] = {"type": "sealog.checkpoint", "org_id": org_id,
                              "stream_id": stream_id, "from_index": start, "to_index": stop,
                              "checkpoint": note}
    if proofs is not None:
        record["inclusion_proofs"] = proofs
    return record


def webhook_body(fmt: str, events: list[Sent], record: dict[str, Any], source: str
                 ) -> tuple[bytes, str]:
    """A webhook request's body and content type: in `cloudevents`, a CloudEvents batch
    whose last event is the checkpoint record; else the record with an `events` array."""
    if fmt == "cloudevents":
        checkpoint = orjson.dumps({
            "specversion": "1.0", "id": f"{record['stream_id']}_{record['from_index']}_"
            f"{record['to_index']}", "source": source, "type": CHECKPOINT_TYPE,
            "datacontenttype": "application/json", "data": record})
        return b"[" + b",".join([*(e.body for e in events), checkpoint]) + b"]", \
            CLOUDEVENTS_BATCH
    head = orjson.dumps({**record, "type": "sealog.events"})
    return head[:-1] + b',"events":[' + b",".join(e.body for e in events) + b"]}", \
        "application/json"
