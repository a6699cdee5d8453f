"""Canonical form: the fast orjson path must give RFC 8785's bytes, whatever the JSON."""

from __future__ import annotations

import hashlib
import json

import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealog import times
from sealog.events import MAX_SAFE_INTEGER, Redactor, canonical_bytes, leaf_hash, validate_events
from sealog.sealing import prepare, seal

from conftest import event

NOW = times.parse_rfc3339("2026-02-13T10:28:22Z")
REDACTOR = Redactor()

keys = st.text(min_size=0, max_size=8)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
    # Past 2^53 (kept as strings of their digits), up to and past 64 bits.
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([2**53, -(2**53), 2**63, 2**64 - 1, 2**64, -(2**63) - 1])
    | st.floats(allow_nan=False, allow_infinity=False, min_value=-MAX_SAFE_INTEGER,
                max_value=MAX_SAFE_INTEGER)
    # Every finite double: from 2^53 to 1e21 RFC 8785 writes them as bare digits.
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([1e20, -1e20, 2.0**53, 9.999999999999999e20, 1e21, 5e-324, -0.0])
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=20,
)


def sealed_bytes(raw: dict) -> bytes:
    [new] = validate_events([raw], received_at_us=NOW, redactor=REDACTOR)
    item = prepare(new, org_id="acme")
    stored = seal(item, org_id="acme", index=7).doc
    assert stored == rfc8785.dumps({**new.doc, "org_id": "acme", "index": 7})
    # Received later, once the log's lock is taken: only received_at changes.
    later = times.format_rfc3339(NOW + 1_234_567)
    assert seal(item, org_id="acme", index=7, received_at=later).doc == rfc8785.dumps(
        {**new.doc, "org_id": "acme", "index": 7, "received_at": later})
    return stored


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(body=json_values, metadata=st.dictionaries(keys, json_values, max_size=4),
       description=st.text(min_size=1, max_size=30).filter(lambda s: "\x00" not in s))
def test_stored_bytes_are_rfc8785_of_the_document(body, metadata, description):
    raw = event(description=description, metadata=metadata,
                request={"method": "POST", "path": "/p", "body": body, "response": [body]})
    stored = sealed_bytes(raw)
    # What the API returns re-canonicalises to the same bytes, read by Python's json.
    assert stored == rfc8785.dumps(json.loads(stored))


@settings(max_examples=300)
@given(value=json_values)
def test_the_fast_path_gives_rfc8785_bytes_where_callers_take_it(value):
    # Without floats and with ASCII keys (what needs_exact_jcs leaves to it) orjson's
    # sorted output is RFC 8785's.
    [new] = validate_events([event(metadata={"v": value})], received_at_us=NOW,
                            redactor=REDACTOR)
    doc = {**new.doc, "org_id": "acme", "index": 7}
    if not new.needs_exact_jcs:
        assert canonical_bytes(doc, exact=False) == rfc8785.dumps(doc)


def test_non_bmp_and_private_use_keys_sort_as_rfc8785_says():
    # U+1F600 sorts before U+E000 in UTF-16 order but after it in code point order.
    raw = event(metadata={"\ue000": 1, "\U0001f600": 2, "a": 1.5})
    stored = sealed_bytes(raw)
    assert stored.index("😀".encode()) < stored.index("\ue000".encode())
    assert b'"a":1.5' in stored


def test_leaf_hash_is_sha256_of_zero_byte_and_canonical():
    canonical = b'{"a":1}'
    assert leaf_hash(canonical) == hashlib.sha256(b"\x00" + canonical).digest()
