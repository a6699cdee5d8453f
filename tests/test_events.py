"""The event model: validation, catalog defaults, redaction, truncation, limits."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import uuid

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealog import times
from sealog.events import (
    MAX_BATCH_EVENTS,
    MAX_JSON_DEPTH,
    REDACTED,
    EventValidationError,
    Redactor,
    _is_stored_form,
    _nests_at_most,
    catalog_entry,
    loads_json,
    validate_events,
)
from sealog.ingest import prepare_events

from conftest import event

NOW = times.parse_rfc3339("2026-02-13T10:28:22Z")


def one(raw: dict, redactor: Redactor | None = None) -> dict:
    return validate_events([raw], received_at_us=NOW, redactor=redactor or Redactor())[0].doc


def errors_of(raws: list) -> list[tuple[int | None, str, str]]:
    with pytest.raises(EventValidationError) as info:
        validate_events(raws, received_at_us=NOW, redactor=Redactor())
    return [(e.index, e.field, e.message) for e in info.value.errors]


def test_catalog_fills_category_type_and_description():
    doc = one(event(action="policy.enabled"))
    assert doc["category"] == "policy_changes"
    assert doc["event_type"] == "Policy Change"
    assert doc["description"] == "Enabled OPA policy"
    assert catalog_entry("job.nightly_backup").event_type == "Scheduled Job"
    assert catalog_entry("system.restart").category == "system_events"


def test_fixed_shape_with_nulls_for_absent_objects():
    doc = one(event())
    assert doc["resource"] is None and doc["request"] is None
    assert doc["context"] == {"ip": None, "user_agent": None, "session_id": None,
                              "request_id": None}
    assert doc["metadata"] == {}
    assert doc["actor"]["type"] == "user"
    assert doc["occurred_at"] == doc["received_at"] == "2026-02-13T10:28:22.000000Z"


def test_unknown_action_needs_a_category_naming_all_five():
    [(index, field, message)] = errors_of([event(action="billing.invoice_paid")])
    assert (index, field) == (0, "category")
    for name in ("agent_operations", "policy_changes", "user_actions", "security_events",
                 "system_events"):
        assert name in message
    doc = one(event(action="billing.invoice_paid", category="user_actions"))
    assert doc["event_type"] == "User Actions"


def test_catalog_action_with_another_category_is_refused():
    [(_, field, message)] = errors_of([event(category="security_events")])
    assert field == "category" and "agent_operations" in message


def test_every_bad_event_is_named_with_its_field():
    errors = errors_of([
        event(),
        event(result="exploded"),
        event(actor={"email": "not-an-email"}),
        event(action="Guardrail Created"),
        event(occurred_at="2026-02-13 10:28"),
        event(extra_field=1),
        event(actor={}),
    ])
    fields = {(i, f) for i, f, _ in errors}
    assert {(1, "result"), (2, "actor.email"), (3, "action"), (4, "occurred_at"),
            (5, "extra_field"), (6, "actor")} <= fields
    assert not any(i == 0 for i, _, _ in errors)
    assert any("dotted machine name" in m for _, f, m in errors if f == "action")


def test_wrong_types_are_refused_not_coerced():
    errors = errors_of([event(actor={"email": "a@b.co", "id": 12}),
                        event(request={"method": "GET", "path": "/x", "status": "200"})])
    assert (0, "actor.id") in {(i, f) for i, f, _ in errors}
    assert (1, "request.status") in {(i, f) for i, f, _ in errors}


def test_future_limit_is_five_minutes():
    ok = times.format_rfc3339(NOW + 5 * 60 * 10**6)
    late = times.format_rfc3339(NOW + 5 * 60 * 10**6 + 1)
    assert one(event(occurred_at=ok))["occurred_at"] == ok
    [(_, field, message)] = errors_of([event(occurred_at=late)])
    assert field == "occurred_at" and "future" in message


def test_occurred_at_is_normalised_to_utc_microseconds():
    doc = one(event(occurred_at="2026-02-13T11:28:22.5+01:00"))
    assert doc["occurred_at"] == "2026-02-13T10:28:22.500000Z"
    doc = one(event(occurred_at="2026-02-13T10:28:22.123456789012Z"))  # RFC 3339: any length
    assert doc["occurred_at"] == "2026-02-13T10:28:22.123456Z"


def test_batch_limits():
    assert errors_of([])[0][1] == "events"
    [(index, field, message)] = errors_of([event()] * (MAX_BATCH_EVENTS + 1))
    assert index is None and "1000" in message
    assert len(validate_events([event()] * MAX_BATCH_EVENTS, received_at_us=NOW,
                               redactor=Redactor())) == MAX_BATCH_EVENTS


@pytest.mark.parametrize("pad", ["", "x" * 400])  # walked at once, or checked first
def test_secrets_are_redacted_at_any_depth_before_storage(pad):
    doc = one(event(
        description=f"login {pad}"[:900],
        request={"method": "POST", "path": "/login",
                 "body": {"user": "a", "password": "hunter2", "pad": pad,
                          "nested": [{"Authorization": "Bearer x", "ok": 1}]},
                 "response": {"access_token": "t", "max_tokens": 5, "apiKey": "k", "pad": pad}},
        metadata={"deep": {"client_secret": "s", "Set-Cookie": "c"}, "tokens_used": 3,
                  "pad": pad},
        context={"ip": "10.0.0.1", "x_private_key": "pk"},
    ))
    body, response = doc["request"]["body"], doc["request"]["response"]
    assert body["password"] == REDACTED and body["user"] == "a"
    assert body["nested"][0] == {"Authorization": REDACTED, "ok": 1}
    assert response == {"access_token": REDACTED, "max_tokens": 5, "apiKey": REDACTED,
                        "pad": pad}
    assert doc["metadata"] == {"deep": {"client_secret": REDACTED, "Set-Cookie": REDACTED},
                               "tokens_used": 3, "pad": pad}
    assert doc["context"]["x_private_key"] == REDACTED
    assert doc["context"]["ip"] == "10.0.0.1"


def test_redaction_leaves_the_callers_objects_alone():
    body = {"password": "hunter2"}
    one(event(request={"method": "POST", "path": "/x", "body": body}))
    assert body == {"password": "hunter2"}


def test_configured_secret_keys_replace_the_defaults():
    doc = one(event(metadata={"ssn": "123", "password": "p"}), Redactor(("ssn",)))
    assert doc["metadata"] == {"ssn": REDACTED, "password": "p"}


def test_large_body_is_replaced_by_a_visible_marker():
    big = {"blob": "x" * 70_000, "password": "hunter2"}
    doc = one(event(request={"method": "PUT", "path": "/x", "body": big, "response": {"ok": 1}}))
    marker = doc["request"]["body"]
    assert marker["_truncated"] is True
    assert marker["size"] > 64 * 1024
    assert len(marker["preview"]) == 1024
    assert "hunter2" not in marker["preview"]
    assert doc["request"]["response"] == {"ok": 1}


def test_metadata_over_16_kib_is_refused():
    [(_, field, message)] = errors_of([event(metadata={"x": "y" * 17_000})])
    assert field == "metadata" and "16 KiB" in message


# Sent, and kept: what RFC 8785 writes for each, read back alike by Python and JavaScript.
NUMBERS = [
    (2**53 - 1, 2**53 - 1),
    (2**53, "9007199254740992"),
    (1234567890123456789, "1234567890123456789"),
    (-(2**70), "-1180591620717411303424"),
    (1e20, "100000000000000000000"),  # RFC 8785 writes it as bare digits
    (-(2.0**60), "-1152921504606847000"),
    (9007199254740992.0, "9007199254740992"),
    (1e21, 1e21),
    (1.7976931348623157e308, 1.7976931348623157e308),
    (5e-324, 5e-324),
    (3.0, 3.0),
]


@pytest.mark.parametrize("where", ["metadata", "request.body", "request.response", "context"])
@pytest.mark.parametrize("company", ["", "x" * 400, "password", "ratio"])
def test_numbers_beyond_two_to_the_53_are_kept_as_their_digits(where, company):
    # Alone past SMALL_JSON bytes (no walk), beside a secret or a float: on every path.
    value = {"n": [sent for sent, _ in NUMBERS], "pad": company, company: 0.5}
    request = {"method": "POST", "path": "/x"}
    raw = (event(metadata=value) if where == "metadata"
           else event(context={"ip": None, "x": value}) if where == "context"
           else event(request={**request, where.split(".")[1]: value}))
    doc = one(raw)
    kept = (doc["context"]["x"] if where == "context"
            else doc["metadata"] if where == "metadata"
            else doc["request"][where.split(".")[1]])
    assert kept["n"] == [stored for _, stored in NUMBERS]
    assert [type(v) for v in kept["n"]] == [type(stored) for _, stored in NUMBERS]


def test_integers_beyond_the_range_of_json_numbers_are_refused():
    [(_, field, message)] = errors_of([event(metadata={"n": 2**1100})])
    assert field == "metadata" and "1.8e308" in message


def test_text_with_integers_past_64_bits_is_read_exactly():
    text = b'{"a": [123456789012345678901234567890, -9223372036854775809, 18446744073709551615'
    text += b', 1.5, "12345678901234567890123"]}'
    assert loads_json(text) == {"a": [123456789012345678901234567890, -9223372036854775809,
                                      18446744073709551615, 1.5, "12345678901234567890123"]}
    assert loads_json(b'{"a": [1, 2.5]}') == {"a": [1, 2.5]}
    with pytest.raises(ValueError):
        loads_json(b'{"a": NaN, "b": 12345678901234567890123}')


@pytest.mark.parametrize("where", ["metadata", "request.body", "request.response", "context"])
# Walked at once (short); checked with the others first; checked alone (beside a float).
@pytest.mark.parametrize("path", ["walked", "with_others", "alone"])
def test_free_json_nested_past_64_levels_is_refused_naming_the_field(where, path):
    pad = "" if path == "walked" else "x" * 400

    def nested(levels: int) -> dict:
        value: object = "[{]}"  # brackets in a string are not nesting
        for level in range(levels - 1):
            value = [value] if level % 2 else {"k": value}
        return {"pad": pad, "v": value, "flat": [[1], {"a": 2}] * 40}

    def raw(levels: int) -> dict:
        request = {"method": "POST", "path": "/x"}
        beside = {"ratio": 0.5} if path == "alone" else None
        if where == "context":  # its own object is its first level
            return event(context={"x": nested(levels - 1)}, metadata=beside)
        if where == "metadata":
            return event(metadata=nested(levels), request={**request, "body": beside})
        field = where.split(".")[1]
        other = "response" if field == "body" else "body"
        return event(request={**request, field: nested(levels), other: beside})

    one(raw(MAX_JSON_DEPTH))
    message = f"is nested more than {MAX_JSON_DEPTH} levels deep (arrays and objects)"
    for levels in (MAX_JSON_DEPTH + 1, 300, 900):
        assert errors_of([raw(levels)]) == [(0, where, message)]


def _depth(value: object) -> int:
    items = (value.values() if isinstance(value, dict)
             else value if isinstance(value, list) else None)
    return 0 if items is None else 1 + max(map(_depth, items), default=0)


@settings(max_examples=500)
@given(value=st.recursive(
    st.booleans() | st.text(alphabet="[]{}ab", max_size=4),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text("[]{}ab", max_size=2), c,
                                                        max_size=3),
    max_leaves=40,
), levels=st.integers(0, 12))
def test_the_nesting_of_json_text_is_measured_exactly(value, levels):
    assert _nests_at_most(orjson.dumps(value), levels) == (_depth(value) <= levels)


def test_nul_characters_are_refused_in_indexed_fields():
    [(_, field, message)] = errors_of([event(description="a\x00b")])
    assert field == "description" and "NUL" in message


def test_client_id_must_be_a_uuid7():
    [(_, field, _m)] = errors_of([event(id="123")])
    assert field == "id"
    doc = one(event(id="01a214a4-65df-7047-b506-bf87b41fd50a"))
    assert doc["id"] == "01a214a4-65df-7047-b506-bf87b41fd50a"


def test_ids_and_emails_take_no_trailing_newline():
    # Python's `$` matches before a final newline.
    errors = errors_of([event(id="01a214a4-65df-7047-b506-bf87b41fd50a\n"),
                        event(actor={"email": "alice@acme.com\n"})])
    assert [(i, f) for i, f, _ in errors] == [(0, "id"), (1, "actor.email")]


@pytest.mark.parametrize("text", [
    "\uff12\uff10\uff12\uff16-12-01T10:00:00.000000Z",  # fullwidth digits
    "2026-12-01T10:00:00.000000Z\n",
    "2026-12-01T10:00:00Z\n",
    "2026-12-01T1\u0660:00:00Z",  # an Arabic-Indic zero
    "2026-12-01T10:00:00.\u0665Z",
    "2026-12-01T10:00:00+0\u0661:00",
    "2026-12-0\U0001d7cfT10:00:00Z",  # a mathematical bold one
])
def test_times_are_rfc3339_in_ascii_digits_only(text):
    with pytest.raises(times.TimeError):
        times.parse_rfc3339(text)
    [(_, field, message)] = errors_of([event(occurred_at=text)])
    assert field == "occurred_at" and "RFC 3339" in message
    with pytest.raises(times.TimeError):
        times.resolve_range("custom", start=text)


def test_method_is_uppercased_and_checked():
    assert one(event(request={"method": "put", "path": "/a"}))["request"]["method"] == "PUT"
    [(_, field, _m)] = errors_of([event(request={"method": "FETCH", "path": "/a"})])
    assert field == "request.method"


@pytest.mark.parametrize("where", ["metadata", "request.body", "request.response"])
@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinity_are_refused_not_stored_as_null(where, number):
    # orjson would write them as null: a caller passing them must hear of it.
    deep = {"a": 1, "b": 2, "c": 3, "d": 4, "e": [1, 2, 3, 4, 5, {"x": number}]}
    request = {"method": "POST", "path": "/x"}
    raw = event(metadata=deep) if where == "metadata" else event(
        request={**request, where.split(".")[1]: deep})
    assert errors_of([raw]) == [(0, where, "NaN and Infinity are not JSON numbers")]


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Label(enum.StrEnum):
    A = "a"


class Text(str):
    pass


@dataclasses.dataclass
class Point:
    x: int


def _outcome(body: dict) -> tuple[str, object]:
    raw = event(request={"method": "POST", "path": "/p", "body": body})
    try:
        [item] = prepare_events([raw], org_id="acme", received_at_us=NOW, redactor=Redactor())
    except EventValidationError as exc:
        return "refused", exc.errors[0].message
    doc = orjson.loads(item.canonical_head + b"0" + item.canonical_tail)
    return "stored", doc["request"]["body"]


@pytest.mark.parametrize("value", [
    (1, "two"), uuid.UUID("12345678-1234-5678-1234-567812345678"), Colour.RED, Level.HIGH,
    Label.A, Text("t"), datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC),
    datetime.date(2026, 1, 2), Point(1), {1, 2}, b"bytes",
])
@pytest.mark.parametrize("pad", ["", "x" * 400])
def test_a_python_value_is_stored_or_refused_alike_on_every_path(value, pad):
    # Alone a body past SMALL_JSON bytes needs no walk (a shorter one is always walked);
    # beside a secret key it is walked; beside a float the event takes the exact RFC 8785
    # path. The outcome must not depend on which.
    plain = _outcome({"v": value, "pad": pad})
    walked = _outcome({"v": value, "pad": pad, "password": "p"})
    exact = _outcome({"v": value, "pad": pad, "ratio": 0.5})
    assert walked[0] == plain[0] == exact[0]
    if plain[0] == "refused":
        assert plain[1] == walked[1] == exact[1]
        assert "is not a JSON value" in plain[1]
    else:
        assert walked[1] == {**plain[1], "password": "[REDACTED]"}
        assert exact[1] == {**plain[1], "ratio": 0.5}


@given(year=st.integers(1970, 2100), month=st.integers(1, 12), day=st.integers(1, 31),
       hour=st.integers(0, 23), minute=st.integers(0, 59), second=st.integers(0, 60),
       micros=st.integers(0, 999_999))
def test_a_time_sent_in_its_stored_form_is_kept_as_sent(year, month, day, hour, minute,
                                                         second, micros):
    text = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.{micros:06d}Z"
    try:
        us = times.parse_rfc3339(text)
    except times.TimeError:
        return  # no such day
    assert (times.format_rfc3339(us) == text) == _is_stored_form(text)
