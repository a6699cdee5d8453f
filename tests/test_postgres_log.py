"""The log on each backend: the same batches make the same events, indexes, Merkle tree
and head; retries and re-used ids are told apart with nothing stored half-way; writers at
once number an org's events densely; checkpoints round trip."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

import psycopg
import pytest

from sealog import auth, events
from sealog.events import Redactor
from sealog.ingest import IdConflict, append, ingest
from sealog.ledger import merkle, tree
from sealog.sampledata import generate_events
from sealog.sealing import prepare_events, seal
from sealog.store import NotFound, Store, open_store
from sealog.store.base import CheckpointRow, EventRow
from sealog.store.postgres.partitions import ensure_partitions, month_start_us
from sealog.store.postgres.tokens import event_lexemes

from conftest import all_at_once

# One event, a few (a single INSERT each), and batches that go by COPY.
BATCH_SIZES = [1, 5, 15, 16, 300, 1000]
DAY_US = 86_400_000_000
START_US = month_start_us((2026, 1)) + 3_600_000_000


def _event_id(n: int) -> str:
    return f"0193f8a0-0000-7000-8000-{n:012x}"


def _batches() -> Iterator[tuple[int, list[dict]]]:
    """(received_at, events) of each of BATCH_SIZES, each batch a month after the last, the
    events sample data with ids of their own."""
    n = 0
    for k, size in enumerate(BATCH_SIZES):
        received = START_US + k * 31 * DAY_US
        batch = list(generate_events(size, seed=k, days=20, now_us=received))
        for e in batch:
            e["id"] = _event_id(n)
            n += 1
        yield received, batch


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = open_store(store_url)
    try:
        auth.create_org(store=s, name="Acme", org_id="acme")
        yield s
    finally:
        s.close()


def _ingest_batches(store: Store) -> list:
    accepted = []
    for received, batch in _batches():
        accepted += ingest(store=store, org_id="acme", raw_events=batch, redactor=Redactor(),
                           received_at_us=received)
    return accepted


def _log(store: Store, org_id: str = "acme") -> list:
    return list(store.iter_events_by_index(org_id, 0, store.log_head(org_id).size))


def _check_log_is_whole(store: Store, org_id: str = "acme") -> list:
    """The org's events, after checking them gapless and their tree and head theirs."""
    head = store.log_head(org_id)
    stored = _log(store, org_id)
    assert [d.index for d in stored] == list(range(head.size))
    assert [d.leaf_hash for d in stored] == [events.leaf_hash(d.doc) for d in stored]
    leaves = [d.leaf_hash for d in stored]
    assert store.read_tree_range(org_id, 0, 0, head.size) == {
        (0, i): h for i, h in enumerate(leaves)}
    assert tree.head_root(head) == merkle.root_of_leaves(leaves)
    assert merkle.root_from_nodes(head.size, lambda wanted: store.read_tree_nodes(
        org_id, wanted)) == merkle.root_of_leaves(leaves)
    return stored


def _sealed_rows() -> list[EventRow]:
    """The rows _batches make, sealed in order from index 0, as ingest stores them."""
    rows: list[EventRow] = []
    for received, batch in _batches():
        for item in prepare_events(batch, org_id="acme", received_at_us=received,
                                   redactor=Redactor()):
            rows.append(seal(item, org_id="acme", index=len(rows)))
    return rows


def _row_mismatches(postgres_url: str) -> list[int]:
    """Indexes of the sealed rows whose PostgreSQL columns differ from the row: its values,
    and as words, pairs and fields its tokens as tokens.event_lexemes stores them."""
    with psycopg.connect(postgres_url) as conn:
        return [row.index for row in _sealed_rows() if conn.execute(
            "SELECT (id, occurred_at, category, result, action, actor_id, actor_email, "
            "actor_name, resource_type, resource_id, method, path, ip, leaf_hash, "
            "search_text) IS NOT DISTINCT FROM (%s::text, %s::int8, %s::text, %s::text, "
            "%s::text, %s::text, %s::text, %s::text, %s::text, %s::text, %s::text, %s::text, "
            "%s::text, %s::bytea, %s::text) AND words = array_to_tsvector(%s::text[]) "
            "AND pairs = array_to_tsvector(%s::text[]) "
            "AND fields = array_to_tsvector(%s::text[]) FROM events "
            "WHERE org_id = 'acme' AND idx = %s",
            (*row[2:17],
             *event_lexemes(row.search_text, row.word_pairs, row.field_tokens), row.index)
        ).fetchone() != (True,)]


def test_the_same_batches_make_the_same_log_on_each_backend(postgres_url: str,
                                                            tmp_path: Path):
    sqlite = open_store(f"sqlite:///{tmp_path / 'sealog.db'}")
    postgres = open_store(postgres_url)
    try:
        for s in (sqlite, postgres):
            auth.create_org(store=s, name="Acme", org_id="acme")
        assert _ingest_batches(sqlite) == _ingest_batches(postgres)
        # Upkeep moves the rows out of the default partitions into their months'.
        with psycopg.connect(postgres_url) as conn, conn.transaction():
            assert ensure_partitions(conn, now_us=START_US)
        logs = [_check_log_is_whole(s) for s in (sqlite, postgres)]
        assert len(logs[0]) == sum(BATCH_SIZES)
        assert logs[0] == logs[1]
        assert sqlite.log_head("acme") == postgres.log_head("acme")
        size = sum(BATCH_SIZES)
        for index in (0, 1, 20, 336, size - 1):
            doc = logs[0][index]
            assert sqlite.get_event("acme", doc.id) == postgres.get_event("acme", doc.id) == doc
            assert tree.inclusion_proof(store=postgres, org_id="acme", index=index,
                                        size=size) == tree.inclusion_proof(
                store=sqlite, org_id="acme", index=index, size=size)
        # A range that starts and ends inside pages of the reads.
        assert list(postgres.iter_events_by_index("acme", 3, size - 2)) == logs[0][3:-2]
        assert postgres.get_event("acme", _event_id(size)) is None
        assert postgres.get_event("globex", logs[0][0].id) is None
        assert _row_mismatches(postgres_url) == []
    finally:
        sqlite.close()
        postgres.close()


def test_a_retried_id_is_a_duplicate_and_other_content_a_conflict_storing_nothing(store):
    received = START_US
    batch = list(generate_events(40, seed=3, now_us=received))
    for n, e in enumerate(batch):
        e["id"] = _event_id(n)
    first = ingest(store=store, org_id="acme", raw_events=batch, redactor=Redactor(),
                   received_at_us=received)
    retried = ingest(store=store, org_id="acme", raw_events=batch, redactor=Redactor(),
                     received_at_us=received + 1_000_000)
    assert [(a.id, a.index, a.duplicate) for a in retried] == [
        (a.id, a.index, True) for a in first]
    before = store.log_head("acme")
    assert before.size == len(batch)

    fresh = dict(batch[0], id=_event_id(99))
    changed = dict(batch[7], action="guardrail.deleted")
    with pytest.raises(IdConflict) as refused:
        ingest(store=store, org_id="acme", raw_events=[fresh] * 20 + [changed],
               redactor=Redactor(), received_at_us=received)
    assert [(e.index, e.field) for e in refused.value.errors] == [(20, "id")]
    assert store.log_head("acme") == before
    assert store.get_event("acme", _event_id(99)) is None
    assert store.read_tree_range("acme", 0, before.size, before.size + 30) == {}
    _check_log_is_whole(store)


def test_ingest_into_an_org_that_does_not_exist_is_not_found(store):
    with pytest.raises(NotFound):
        ingest(store=store, org_id="globex", raw_events=next(_batches())[1],
               redactor=Redactor())


def test_two_stores_ingesting_into_one_org_at_once_number_every_event_once(store,
                                                                           store_url):
    other = open_store(store_url)
    rounds, per_batch = 12, 20

    def send(s: Store, writer: int) -> None:
        for r in range(rounds):
            # alternately by COPY and by single INSERTs
            size = per_batch if r % 2 else 3
            batch = list(generate_events(size, seed=writer * 100 + r))
            for n, e in enumerate(batch):
                e["id"] = _event_id(writer * 10_000 + r * 100 + n)
            ingest(store=s, org_id="acme", raw_events=batch, redactor=Redactor())

    try:
        outcomes = all_at_once([partial(send, s, w) for w, s in enumerate((store, other))])
    finally:
        other.close()
    assert outcomes == [None, None]
    stored = _check_log_is_whole(store)
    sent = {_event_id(w * 10_000 + r * 100 + n) for w in range(2) for r in range(rounds)
            for n in range(per_batch if r % 2 else 3)}
    assert sorted(d.id for d in stored) == sorted(sent)


def test_checkpoints_round_trip_and_orgs_behind_them_are_found(store):
    auth.create_org(store=store, name="Globex", org_id="globex")
    received, batch = next(_batches())
    ingest(store=store, org_id="acme", raw_events=batch, redactor=Redactor(),
           received_at_us=received)
    head = store.log_head("acme")
    empty = CheckpointRow("globex", 0, merkle.root_of_leaves([]), "note 0", "key1", received)
    assert store.insert_checkpoint(empty)
    assert store.orgs_behind_checkpoint() == ["acme"]
    assert store.latest_checkpoint("acme") is None

    row = CheckpointRow("acme", head.size, tree.head_root(head), "note 1", "key1", received)
    assert store.insert_checkpoint(row)
    assert not store.insert_checkpoint(CheckpointRow("acme", head.size, bytes(32), "other",
                                                     "key2", received + 1))
    assert store.latest_checkpoint("acme") == row
    assert store.latest_checkpoint("globex") == empty
    assert store.orgs_behind_checkpoint() == []

    ingest(store=store, org_id="globex", raw_events=batch, redactor=Redactor(),
           received_at_us=received)
    assert store.orgs_behind_checkpoint() == ["globex"]


def test_a_batch_appended_in_chunks_in_one_transaction_stores_each_event_once(store):
    """As ingest with preparers does: several chunks, each by COPY, in one transaction."""
    prepared = prepare_events(next(_batches())[1] + [
        dict(e, id=_event_id(1000 + n))
        for n, e in enumerate(generate_events(60, seed=5, now_us=START_US))],
        org_id="acme", received_at_us=START_US, redactor=Redactor())
    chunks = [prepared[:21], prepared[21:41], prepared[41:]]
    with store.writing() as tx:
        accepted = append(tx, "acme", iter(chunks))
    assert [a.index for a in accepted] == list(range(61))
    assert [d.id for d in _check_log_is_whole(store)] == [item.id for item in prepared]
