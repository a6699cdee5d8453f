"""Response shapes, for the OpenAPI document (responses are written as JSON bytes directly)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class Actor(BaseModel):
    id: str | None
    email: str | None
    name: str | None
    type: Literal["user", "agent", "api_key", "system"]


class Resource(BaseModel):
    type: str
    id: str | None
    name: str | None


class HttpRequest(BaseModel):
    method: str
    path: str
    status: int | None
    body: Any
    response: Any


class Context(BaseModel):
    ip: str | None
    user_agent: str | None
    session_id: str | None
    request_id: str | None


class RecordedBy(BaseModel):
    """The credential that wrote an event into the log, set by the server and sealed."""

    type: Literal["api_key", "sealog"]
    id: str | None


class Event(BaseModel):
    """A stored event exactly as hashed, plus its leaf_hash."""

    id: str
    org_id: str
    index: int
    occurred_at: str
    received_at: str
    category: str
    event_type: str
    action: str
    description: str
    result: str
    actor: Actor
    resource: Resource | None
    request: HttpRequest | None
    context: Context
    metadata: dict[str, Any]
    recorded_by: RecordedBy | None = Field(
        None, description="absent on events stored before Sealog recorded it")
    leaf_hash: str


class RetainedFrom(BaseModel):
    """Events received before received_at (indexes below index) were removed under the
    org's retention policy of policy_days days."""

    index: int
    received_at: str | None
    policy_days: int | None


class EventPage(BaseModel):
    data: list[Event]
    next_cursor: str | None
    retained_from: RetainedFrom | None = Field(
        None, description="set when the time range reaches before the retained events")


class EventCount(BaseModel):
    count: int


class AcceptedEvent(BaseModel):
    id: str
    index: int
    duplicate: bool


class IngestResult(BaseModel):
    events: list[AcceptedEvent]


class FieldProblem(BaseModel):
    index: int | None
    field: str
    message: str


class ProblemDetails(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldProblem] | None = None


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ProblemDetails, "content": {"application/problem+json": {}}}
    for code in (401, 403, 404, 422)
}
