"""The PostgreSQL schema on a real server: migrations, partitions, search tokens, and the
rules a sharded PostgreSQL (Citus) sets, read from the live catalog."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import orjson
import psycopg
import pytest

from sealog import events, times
from sealog.events import Redactor
from sealog.ingest import prepare_events, seal
from sealog.ledger import merkle, tree
from sealog.search import field_token
from sealog.store.base import EventRow, LogHead
from sealog.store.postgres import partitions, schema, tokens
from sealog.store.postgres.migrations import (
    SCHEMA_LOCK,
    migrate,
    migration_scripts,
    schema_change,
)

from conftest import event, wait_for

ALL_MIGRATIONS = [name for name, _ in migration_scripts()]
OPERATIONS_DOC = Path(__file__).parent.parent / "docs" / "operations.md"
HOUR_US = 3600 * 10**6


def _connect(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True)


def _row(*, index: int = 0, org_id: str = "acme", received_us: int | None = None,
         **fields) -> EventRow:
    """A sealed row made by sealog's own ingest code, received at received_us."""
    received = times.now_us() if received_us is None else received_us
    (item,) = prepare_events([event(**fields)], org_id=org_id, received_at_us=received,
                             redactor=Redactor())
    return seal(item, org_id=org_id, index=index)


def _insert(conn: psycopg.Connection, row: EventRow, received_us: int) -> None:
    """Stores an event row and its document, the tokens as store/postgres/tokens.py gives
    them."""
    conn.execute(
        "INSERT INTO events (org_id, idx, id, received_at, occurred_at, category, result, "
        "action, actor_id, actor_email, actor_name, resource_type, resource_id, method, path, "
        "ip, leaf_hash, search_text, words, pairs, fields) VALUES (%s, %s, %s, %s, %s, %s, %s, "
        "%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, array_to_tsvector(%s::text[]), "
        "array_to_tsvector(%s::text[]), array_to_tsvector(%s::text[]))",
        (row.org_id, row.index, row.id, received_us, row.occurred_us, row.category, row.result,
         row.action, row.actor_id, row.actor_email, row.actor_name, row.resource_type,
         row.resource_id, row.method, row.path, row.ip, row.leaf_hash, row.search_text,
         *tokens.event_lexemes(row.search_text, row.word_pairs, row.field_tokens)),
    )
    conn.execute("INSERT INTO event_docs (org_id, idx, received_at, doc) VALUES (%s, %s, %s, %s)",
                 (row.org_id, row.index, received_us, row.doc))


def _partitions(conn: psycopg.Connection, table: str) -> dict[str, str]:
    """table's partitions: name -> bounds."""
    return dict(conn.execute(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass", (table,),
    ).fetchall())


def _schema_snapshot(conn: psycopg.Connection) -> dict[str, list]:
    """The schema's tables, columns, indexes and constraints, as the catalog describes them."""
    here = "relnamespace = current_schema()::regnamespace"
    return {
        "columns": conn.execute(
            "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull "
            f"FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid WHERE c.{here} "
            "AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped ORDER BY 1, 2"
        ).fetchall(),
        "indexes": conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() ORDER BY 1"
        ).fetchall(),
        "constraints": conn.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
            "FROM pg_constraint WHERE connamespace = current_schema()::regnamespace "
            "ORDER BY 1, 2"
        ).fetchall(),
        "migrations": conn.execute("SELECT version, applied_at FROM schema_migrations "
                                   "ORDER BY 1").fetchall(),
    }


# -- migrations ------------------------------------------------------------------------


def test_migrations_apply_to_an_empty_database_and_a_second_run_changes_nothing(postgres_url):
    assert migrate(postgres_url) == ALL_MIGRATIONS
    with _connect(postgres_url) as conn:
        tables = {r[0] for r in conn.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = current_schema()::regnamespace "
            "AND relkind IN ('r', 'p') AND NOT relispartition")}
        assert tables == {*schema.DISTRIBUTED_TABLES, *schema.REFERENCE_TABLES,
                          *schema.LOCAL_TABLES}
        before = _schema_snapshot(conn)

    assert migrate(postgres_url) == []
    with _connect(postgres_url) as conn:
        assert _schema_snapshot(conn) == before
        assert [v for v, _ in before["migrations"]] == ALL_MIGRATIONS


def test_migration_0003_gives_each_org_the_received_at_of_its_newest_event(postgres_url):
    """The received_at the next batch may not go below: the newest event's, by index, even
    where an older one was received later (as concurrent batches could be before)."""
    (first, sql), *later = migration_scripts()
    received = times.now_us()
    rows = [_row(index=n, received_us=received - n * HOUR_US) for n in range(2)]
    head, _ = tree.append_leaves(LogHead(0, ()), [r.leaf_hash for r in rows])
    with _connect(postgres_url) as conn:  # a database that migrate() left at 0001
        conn.execute(sql.encode())
        conn.execute("CREATE TABLE schema_migrations (version TEXT COLLATE \"C\" PRIMARY KEY, "
                     "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (first,))
        conn.execute("INSERT INTO orgs (id, name, created_at, log_size, compact_range) VALUES "
                     "('acme', 'Acme', 1, 2, %s), ('globex', 'Globex', 1, 0, '')",
                     (b"".join(head.compact_range),))
        for row in rows:
            _insert(conn, row, times.parse_rfc3339(orjson.loads(row.doc)["received_at"]))
    assert migrate(postgres_url) == [name for name, _ in later]
    with _connect(postgres_url) as conn:
        assert dict(conn.execute("SELECT id, last_received_at FROM orgs")) == {
            "acme": received - HOUR_US, "globex": 0}


_RUN_MIGRATE = (
    "import json, sys\n"
    "from sealog.store.postgres.migrations import migrate\n"
    "print(json.dumps(migrate(sys.argv[1])))\n"
)


def test_two_processes_started_together_apply_each_migration_once(postgres_url):
    with _connect(postgres_url) as holder:
        # Both runners start while the lock is held, and race once it is let go.
        holder.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))
        runners = [subprocess.Popen([sys.executable, "-c", _RUN_MIGRATE, postgres_url],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for _ in range(2)]
        try:
            def waiting() -> int:
                return holder.execute(
                    "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                    "WHERE l.locktype = 'advisory' AND NOT l.granted "
                    "AND d.datname = current_database()").fetchone()[0]

            wait_for(lambda: waiting() == 2, 60, "both runners to wait for the schema lock")
            holder.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))
            results = [r.communicate(timeout=60) for r in runners]
        finally:
            for r in runners:
                if r.poll() is None:
                    r.kill()
                    r.wait()
    for runner, (_, err) in zip(runners, results, strict=True):
        assert runner.returncode == 0, err
    applied = [json.loads(out) for out, _ in results]
    assert sorted(applied[0] + applied[1]) == ALL_MIGRATIONS  # each once, by one of them
    with _connect(postgres_url) as conn:
        assert [v for (v,) in conn.execute(
            "SELECT version FROM schema_migrations ORDER BY 1")] == ALL_MIGRATIONS


# -- the rules of a sharded PostgreSQL -----------------------------------------------------


def citus_violations(conn: psycopg.Connection, *, distributed: dict[str, str],
                     reference: tuple[str, ...], local: tuple[str, ...],
                     cross_org: dict[str, str]) -> list[str]:
    """What in the live catalog Citus would refuse, or the schema's own rule breaks, if the
    tables were distributed (by the column given), reference or coordinator tables."""
    problems = []
    here = "relnamespace = current_schema()::regnamespace"
    tables = {name for (name,) in conn.execute(
        f"SELECT relname FROM pg_class WHERE {here} AND relkind IN ('r', 'p') "
        "AND NOT relispartition")}
    classified = [*distributed, *reference, *local]
    problems += [f"{t}: not listed as distributed, reference or local"
                 for t in sorted(tables - set(classified))]
    problems += [f"{t}: listed but not in the schema" for t in classified if t not in tables]

    column_types = set()
    for table, column in distributed.items():
        if table not in tables:
            continue
        found = conn.execute(
            "SELECT format_type(atttypid, atttypmod) || CASE WHEN attcollation = 0 THEN '' "
            "ELSE ' COLLATE ' || attcollation::regcollation::text END, attnotnull "
            "FROM pg_attribute WHERE attrelid = %s::regclass AND attname = %s "
            "AND NOT attisdropped", (table, column)).fetchone()
        if found is None:
            problems.append(f"{table}: no distribution column {column}")
            continue
        column_types.add(found[0])
        if not found[1]:
            problems.append(f"{table}.{column}: the distribution column may be NULL")
    if len(column_types) > 1:  # co-location takes one type and collation
        problems.append("distribution columns differ in type or collation: "
                        + ", ".join(sorted(column_types)))

    # Partitions and their indexes are held to the rules of their partitioned table.
    for index, table, unique, keys in conn.execute(
        "SELECT coalesce(pg_partition_root(i.indexrelid), i.indexrelid)::regclass::text, "
        "coalesce(pg_partition_root(i.indrelid), i.indrelid)::regclass::text, "
        "i.indisunique OR i.indisexclusion, array(SELECT a.attname FROM "
        "unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n) LEFT JOIN pg_attribute a "
        "ON a.attrelid = i.indrelid AND a.attnum = k.attnum WHERE k.n <= i.indnkeyatts "
        "ORDER BY k.n) FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid "
        f"WHERE t.{here} ORDER BY 1, 2"
    ):
        column = distributed.get(table)
        if column is None:
            continue
        if unique and column not in keys:
            problems.append(f"{index}: a unique index of {table} without {column}")
        if keys[0] != column and index not in cross_org:
            problems.append(f"{index}: an index of {table} that does not start with {column}")

    order = {t: n for n, t in enumerate(distributed)}
    for name, source, target, columns, referenced in conn.execute(
        "SELECT c.conname, c.conrelid::regclass::text, c.confrelid::regclass::text, "
        "array(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, n) "
        "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum ORDER BY k.n), "
        "array(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY AS k(attnum, n) "
        "JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum ORDER BY k.n) "
        "FROM pg_constraint c WHERE c.contype = 'f' AND c.conparentid = 0 "
        "AND c.connamespace = current_schema()::regnamespace ORDER BY 1"
    ):
        if source in distributed and target in distributed:
            if (distributed[source], distributed[target]) not in zip(columns, referenced,
                                                                     strict=True):
                problems.append(f"{name}: {source} -> {target} not on the distribution columns")
            if order[target] > order[source]:
                problems.append(f"{name}: {source} is distributed before {target}, which "
                                "it references")
        elif not (target in reference and (source in distributed or source in reference)):
            problems.append(f"{name}: {source} -> {target}: only a reference table may be "
                            "referenced, or a co-located distributed one")
    return problems


def test_the_schema_keeps_to_the_rules_of_a_sharded_postgresql(postgres_url):
    migrate(postgres_url)
    with _connect(postgres_url) as conn:
        assert citus_violations(
            conn, distributed=schema.DISTRIBUTED_TABLES, reference=schema.REFERENCE_TABLES,
            local=schema.LOCAL_TABLES, cross_org=schema.CROSS_ORG_INDEXES) == []
        # The exceptions name real indexes, and the partitions were checked too.
        named = {i for (i,) in conn.execute("SELECT indexname FROM pg_indexes "
                                            "WHERE schemaname = current_schema()")}
        assert set(schema.CROSS_ORG_INDEXES) <= named
        assert {"events_default_org_index", "events_default_org_id"} <= named


def test_the_rule_check_finds_each_kind_of_break(postgres_url):
    with _connect(postgres_url) as conn:
        conn.execute("""
            CREATE TABLE tenants (id TEXT PRIMARY KEY);
            CREATE TABLE things (org_id TEXT NOT NULL, id TEXT PRIMARY KEY);
            CREATE TABLE notes (org_id TEXT NOT NULL, thing TEXT REFERENCES things (id));
            CREATE INDEX notes_thing ON notes (thing);
            CREATE TABLE codes (code TEXT PRIMARY KEY, org_id TEXT REFERENCES tenants (id));
            CREATE TABLE loose (org_id TEXT);
            CREATE TABLE numbered (org_id INTEGER NOT NULL);
            CREATE TABLE stray (x INTEGER);
        """)
        assert sorted(citus_violations(
            conn, distributed={"tenants": "id", "notes": "org_id", "things": "org_id",
                               "loose": "org_id", "numbered": "org_id", "ghost": "org_id"},
            reference=("codes",), local=(), cross_org={},
        )) == sorted([
            "stray: not listed as distributed, reference or local",
            "ghost: listed but not in the schema",
            "loose.org_id: the distribution column may be NULL",
            'distribution columns differ in type or collation: integer, text COLLATE "default"',
            "things_pkey: a unique index of things without org_id",
            "things_pkey: an index of things that does not start with org_id",
            "notes_thing: an index of notes that does not start with org_id",
            "notes_thing_fkey: notes -> things not on the distribution columns",
            "notes_thing_fkey: notes is distributed before things, which it references",
            "codes_org_id_fkey: codes -> tenants: only a reference table may be referenced, "
            "or a co-located distributed one",
        ])


def test_every_text_column_compares_byte_by_byte_as_on_sqlite(postgres_url):
    migrate(postgres_url)
    with _connect(postgres_url) as conn:
        assert conn.execute(
            "SELECT c.relname, a.attname, a.attcollation::regcollation::text FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid "
            "WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p') "
            "AND a.attnum > 0 AND NOT a.attisdropped AND a.atttypid IN ('text'::regtype, "
            "'text[]'::regtype) AND a.attcollation <> '\"C\"'::regcollation"
        ).fetchall() == []


def test_the_citus_statements_in_the_docs_are_the_schemas():
    statements = schema.citus_statements()
    assert "\n".join(statements) in OPERATIONS_DOC.read_text()
    assert len(statements) == len(schema.DISTRIBUTED_TABLES) + len(schema.REFERENCE_TABLES)


# -- partitions ----------------------------------------------------------------------------


def test_migrating_makes_the_months_partitions_from_last_month_to_months_ahead(postgres_url):
    before = partitions.month_of(times.now_us())
    migrate(postgres_url)
    after = partitions.month_of(times.now_us())
    with _connect(postgres_url) as conn:
        for table in partitions.PARTITIONED_TABLES:
            found = _partitions(conn, table)
            assert found.pop(f"{table}_default") == "DEFAULT"
            month = partitions.add_months(after, -1)
            while month <= partitions.add_months(before, partitions.MONTHS_AHEAD):
                low = partitions.month_start_us(month)
                high = partitions.month_start_us(partitions.add_months(month, 1))
                assert found[partitions.partition_name(table, month)] == (
                    f"FOR VALUES FROM ('{low}') TO ('{high}')")
                month = partitions.add_months(month, 1)
            # Every partition has the DEFAULT partition's indexes, none twice.
            indexes = {}
            for name in [f"{table}_default", *found]:
                indexes[name] = sorted(
                    re.sub(r"^CREATE (UNIQUE )?INDEX \S+ ON \S+ ", r"\1", d)
                    for (d,) in conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename "
                                             "= %s", (name,)))
            assert len({tuple(v) for v in indexes.values()}) == 1, indexes
            assert len(indexes[f"{table}_default"]) == (3 + 2 if table == "events" else 1)


def test_events_received_in_any_month_are_stored_and_upkeep_moves_them_to_their_month(
        postgres_url):
    migrate(postgres_url)
    now = times.now_us()
    far_past = partitions.month_start_us((1975, 3)) + HOUR_US
    far_future = partitions.month_start_us((2150, 7)) - 1  # the last µs of June 2150
    late = partitions.month_start_us(
        partitions.add_months(partitions.month_of(now), partitions.MONTHS_AHEAD + 2))
    received = [far_past, far_future, late]
    rows = [_row(index=n, received_us=r, occurred_at=times.format_rfc3339(r - HOUR_US))
            for n, r in enumerate(received)]
    with _connect(postgres_url) as conn:
        for row, at in zip(rows, received, strict=True):
            _insert(conn, row, at)
        for table in partitions.PARTITIONED_TABLES:
            assert conn.execute(f"SELECT count(*) FROM {table}_default").fetchone()[0] == 3

        # Upkeep gives each row its month's partition, as it does once a month is due.
        with schema_change(conn):
            made = partitions.ensure_partitions(conn, now_us=now)
        months = [(1975, 3), (2150, 6), partitions.month_of(late)]
        assert sorted(made) == sorted(partitions.partition_name(t, m) for m in months
                                      for t in partitions.PARTITIONED_TABLES)
        for table in partitions.PARTITIONED_TABLES:
            assert conn.execute(f"SELECT count(*) FROM {table}_default").fetchone()[0] == 0
            placed = dict(conn.execute(f"SELECT idx, tableoid::regclass::text FROM {table}"))
            assert placed == {n: partitions.partition_name(table, m)
                              for n, m in enumerate(months)}
        stored = conn.execute(
            "SELECT e.id, e.leaf_hash, d.doc FROM events e JOIN event_docs d ON "
            "(d.org_id, d.idx, d.received_at) = (e.org_id, e.idx, e.received_at) ORDER BY e.idx"
        ).fetchall()
        assert stored == [(r.id, r.leaf_hash, r.doc) for r in rows]
        # The moved rows keep their partition's keys.
        with pytest.raises(psycopg.errors.UniqueViolation):
            _insert(conn, rows[0]._replace(id="0190b7a4-0000-7000-8000-000000000000"), far_past)
        with schema_change(conn):
            assert partitions.ensure_partitions(conn, now_us=now) == []


def test_an_event_occurs_at_most_five_minutes_after_its_receipt_and_searches_use_it(
        postgres_url):
    migrate(postgres_url)
    now = times.now_us()
    received = partitions.month_start_us(partitions.month_of(now)) + HOUR_US
    edge = _row(received_us=received,
                occurred_at=times.format_rfc3339(received + events.MAX_FUTURE_US))
    with _connect(postgres_url) as conn:
        _insert(conn, edge, received)
        with pytest.raises(psycopg.errors.CheckViolation):
            _insert(conn, edge._replace(index=1, id="0190b7a4-0000-7000-8000-000000000001",
                                        occurred_us=edge.occurred_us + 1), received)

        # A search from the edge event's time may skip what was received before it, less
        # five minutes: the event is found, and last month's partition is not read.
        start = edge.occurred_us
        bound = partitions.received_lower_bound(start)
        query = (f"SELECT id FROM events WHERE org_id = 'acme' AND occurred_at >= {start} "
                 f"AND received_at >= {bound}")
        assert conn.execute(query).fetchall() == [(edge.id,)]
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + query))
        month = partitions.month_of(now)
        assert partitions.partition_name("events", month) in plan
        assert partitions.partition_name("events", partitions.add_months(month, -1)) not in plan


def test_an_org_row_holds_one_hash_for_each_set_bit_of_its_log_size(postgres_url):
    migrate(postgres_url)
    compact = merkle.CompactRange()
    with _connect(postgres_url) as conn:
        for size in range(12):
            conn.execute("INSERT INTO orgs (id, name, created_at, log_size, compact_range) "
                         "VALUES (%s, 'Org', 0, %s, %s)",
                         (f"org{size}", size, b"".join(compact.hashes)))
            compact.append(merkle.leaf_hash(str(size).encode()))
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("UPDATE orgs SET log_size = 12 WHERE id = 'org11'")


# -- search tokens -------------------------------------------------------------------------


def _matches(conn: psycopg.Connection, column: str, query: str, org_id: str = "acme") -> bool:
    return conn.execute(
        f"SELECT count(*) FROM events WHERE org_id = %s AND {column} @@ %s::tsquery",
        (org_id, query)).fetchone()[0] == 1


def test_a_tsvector_sent_in_binary_is_the_one_array_to_tsvector_makes(postgres_url):
    """The bytes ingest sends for a token run by binary COPY are read by PostgreSQL as
    exactly array_to_tsvector(lexemes(run)): repeats once, non-ASCII letters, tokens cut
    for being too long, field separators left out, and no token at all."""
    from sealog.search import FIELD_SEPARATOR

    runs = ["", "b a b a", "zürich 東京 zurich é e ab a", "x" * 2000 + " " + "ж" * 600 + " y",
            f"ea1 {FIELD_SEPARATOR} ea1 h2 {FIELD_SEPARATOR}", "a_b b_c a_b", "𝒳" * 256]
    with _connect(postgres_url) as conn:
        conn.execute("CREATE TEMPORARY TABLE sent (n int, v tsvector)")
        with conn.cursor() as cursor, cursor.copy(
                "COPY sent (n, v) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "bytea"])
            for n, run in enumerate(runs):
                copy.write_row((n, tokens.tsvector_binary(run)))
        for n, run in enumerate(runs):
            same, text = conn.execute(
                "SELECT v = array_to_tsvector(%s::text[]) AND v::text = "
                "array_to_tsvector(%s::text[])::text, v::text FROM sent WHERE n = %s",
                (tokens.lexemes(run), tokens.lexemes(run), n)).fetchone()
            assert same, (run[:40], text[:80])


def test_the_tokens_are_stored_as_sealog_makes_them_and_match_word_prefixes(postgres_url):
    migrate(postgres_url)
    row = _row(action="guardrail.created", description="Guardrail made for alice@acme.com",
               resource={"type": "guardrail", "id": "gr_0007"},
               request={"method": "POST", "path": "/api/v1/guardrails"})
    with _connect(postgres_url) as conn:
        _insert(conn, row, times.now_us())
        stored = conn.execute("SELECT tsvector_to_array(words), tsvector_to_array(pairs), "
                              "tsvector_to_array(fields) FROM events").fetchone()
        expected = tokens.event_lexemes(row.search_text, row.word_pairs, row.field_tokens)
        assert [set(s) for s in stored] == [set(e) for e in expected]
        assert {"alice", "acme", "com", "guardrail", "created", "gr", "0007"} <= set(stored[0])
        assert {"alice_acme", "acme_com", "guardrail_created", "gr_0007"} <= set(stored[1])

        # A word prefix, through PostgreSQL's own query parser as through a quoted lexeme.
        assert conn.execute("SELECT words @@ to_tsquery('simple', 'guard:*') FROM events"
                            ).fetchone()[0]
        assert _matches(conn, "words", tokens.query_lexeme("guard", prefix=True)[0])
        assert _matches(conn, "words", "'acme':*")  # the email's words, not the email whole
        assert not _matches(conn, "words", "'guard'")  # a quoted term: whole words only
        assert not _matches(conn, "words", "'guard':*", org_id="globex")
        # Pairs and field tokens match whole, as stored: none is split at '_' or '.'.
        assert _matches(conn, "pairs", "'alice_acme'")
        assert _matches(conn, "pairs", "'gr_0007'")
        assert not _matches(conn, "pairs", "'gr'")
        action = field_token("action", "guardrail.created")
        assert _matches(conn, "fields", f"'{action}'")
        assert _matches(conn, "fields", f"'{field_token('action', 'guardrail.')}':*")
        assert not _matches(conn, "fields", f"'{field_token('action', 'guardrail')}'")
        # What storing text would have done instead: PostgreSQL's parser keeps an email
        # whole and splits a pair.
        assert conn.execute("SELECT to_tsvector('simple', 'alice@acme.com')::text"
                            ).fetchone()[0] == "'alice@acme.com':1"
        assert conn.execute("SELECT to_tsquery('simple', 'alice_acme')::text"
                            ).fetchone()[0] == "'alice' <-> 'acme'"


def test_a_word_too_long_for_a_lexeme_is_stored_cut_and_still_found(postgres_url):
    migrate(postgres_url)
    long_word = "漢" * 990  # 2,970 bytes, past PostgreSQL's 2,047
    row = _row(description=f"{long_word} noted")
    with _connect(postgres_url) as conn:
        _insert(conn, row, times.now_us())
        (words,) = conn.execute("SELECT tsvector_to_array(words) FROM events").fetchone()
        kept = "漢" * (tokens.KEPT_BYTES // 3)
        assert kept + tokens.CUT_MARK in words and "noted" in words

        assert tokens.query_lexeme("漢漢", prefix=True) == ("'漢漢':*", True)
        assert _matches(conn, "words", "'漢漢':*")
        whole, exact = tokens.query_lexeme(long_word, prefix=False)
        assert not exact and _matches(conn, "words", whole)  # narrowed; the row decides
        # A term as long as what was kept is no whole word of the event.
        assert tokens.query_lexeme(kept, prefix=False) == (f"'{kept}'", True)
        assert not _matches(conn, "words", f"'{kept}'")
        assert _matches(conn, "words", f"'{kept}':*")


def test_upkeep_held_up_by_a_long_query_leaves_the_rows_in_default_and_migrating_goes_on(
        postgres_url, caplog):
    migrate(postgres_url)
    received = partitions.month_start_us((2150, 7))
    with _connect(postgres_url) as conn, _connect(postgres_url) as reader:
        _insert(conn, _row(received_us=received), received)
        with reader.transaction():
            reader.execute("SELECT count(*) FROM events").fetchone()  # a query in progress
            assert migrate(postgres_url) == []
        assert "partition upkeep gave up" in caplog.text
        assert conn.execute("SELECT count(*) FROM events_default").fetchone()[0] == 1

        assert migrate(postgres_url) == []  # once the query is done, the month is made
        assert conn.execute("SELECT tableoid::regclass::text FROM events").fetchall() == [
            (partitions.partition_name("events", (2150, 7)),)]


def test_an_open_store_makes_each_months_partition_as_it_comes_due(postgres_url, monkeypatch):
    """A server runs for months: its store makes partitions as months come due, not only
    when it opened (here a due month's partition goes missing and comes back)."""
    from sealog.store import open_store
    from sealog.store.postgres import store as postgres_store

    monkeypatch.setattr(postgres_store, "UPKEEP_SECONDS", 0.2)
    store = open_store(postgres_url)
    try:
        due = partitions.add_months(partitions.month_of(times.now_us()), 2)
        with _connect(postgres_url) as conn:
            for table in partitions.PARTITIONED_TABLES:
                conn.execute(f"DROP TABLE {partitions.partition_name(table, due)}")
            conn.commit()

        def remade() -> bool:
            with _connect(postgres_url) as conn:
                return all(partitions.partition_name(t, due) in _partitions(conn, t)
                           for t in partitions.PARTITIONED_TABLES)

        wait_for(remade, 20, "the store's upkeep to make the due month's partitions again")
    finally:
        store.close()
