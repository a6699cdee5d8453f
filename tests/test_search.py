"""The search language: parsing, tokenisation, and what each query finds in a real store."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sealog import auth, search, times
from sealog.eventlog import count_events, find_events
from sealog.events import Redactor
from sealog.ingest import ingest
from sealog.search import (
    EventFilter,
    QueryTooCostly,
    SearchSyntaxError,
    build_filter,
    parse_query,
    words,
)
from sealog.store import open_store
from sealog.store.sqlite import store as sqlite_store

from conftest import event


def test_words_split_emails_paths_and_actions():
    assert words("alice@acme.com") == ["alice", "acme", "com"]
    assert words("/agent/a1/guardrails/g9") == ["agent", "a1", "guardrails", "g9"]
    assert words("guardrail.trust_tier_changed") == ["guardrail", "trust", "tier", "changed"]
    assert words("Ünïcode Straße") == ["ünïcode", "straße"]


def test_parse_terms_phrases_negation_and_qualifiers():
    q = parse_query('guard "created guardrail" -denied actor:alice@acme.com action:policy.*')
    assert [t.words for t in q.text] == [("guard",), ("created", "guardrail"), ("denied",)]
    assert [t.prefix for t in q.text] == [True, False, True]
    assert q.text[2].negated
    assert [(f.field, f.value, f.prefix) for f in q.fields] == [
        ("actor", "alice@acme.com", False), ("action", "policy.", True)]


@pytest.mark.parametrize("bad, token", [
    ('"unclosed', '"unclosed'),
    ("-", "-"),
    ("nope:x", "nope:x"),
    ("actor:", "actor:"),
    ("result:exploded", "result:exploded"),
    ("category:agents", "category:agents"),
    ("@@@", "@@@"),
    ("action:po*licy", "action:po*licy"),
    ("resource:agent:", "resource:agent:"),
])
def test_malformed_queries_point_at_the_token(bad, token):
    with pytest.raises(SearchSyntaxError) as info:
        parse_query(f"ok {bad}")
    assert info.value.token == token
    assert info.value.position == 3


@given(st.text(max_size=60))
def test_parser_either_parses_or_names_a_token(text):
    try:
        parse_query(text)
    except SearchSyntaxError as exc:
        assert exc.token and 0 <= exc.position <= len(text)


def test_a_query_takes_at_most_twenty_terms_and_qualifiers():
    twenty = " ".join(["guard", "-denied", '"created guardrail"', "actor:ali*"] * 5)
    assert len(_parts(parse_query(twenty))) == 4  # each written five times, counted once
    with pytest.raises(SearchSyntaxError, match="at most 20 terms and qualifiers") as info:
        parse_query(twenty + " method:PUT")
    assert info.value.token == "method:PUT" and info.value.position == len(twenty) + 1
    with pytest.raises(SearchSyntaxError, match="this one has 500") as info:
        parse_query("a " * 500)  # the reviewed query: 500 one-letter prefixes
    assert info.value.position == 40


def _parts(q: search.Query) -> list:
    return [*q.text, *q.fields]


@pytest.mark.parametrize("term", ["a", "-a", "7", "é", "A"])
def test_a_one_character_term_is_refused_as_a_prefix(term):
    with pytest.raises(SearchSyntaxError, match="at least 2 characters") as info:
        parse_query(f"guard {term}")
    assert info.value.token == term and info.value.position == 6
    assert '"' + term.lstrip("-").lower() + '"' in str(info.value)  # it says how to quote it


def test_quoted_one_character_words_and_longer_prefixes_are_taken():
    assert parse_query('"a"').text[0] == search.TextMatch(("a",), prefix=False)
    assert parse_query('-"a"').text[0].negated
    assert parse_query("ag").text[0] == search.TextMatch(("ag",), prefix=True)
    # Several words match consecutively, the last a prefix of its pair: no short prefix.
    assert parse_query("usr_1").text[0] == search.TextMatch(("usr", "1"), prefix=True)
    assert parse_query("actor:a*").fields[0].prefix


def test_a_part_written_twice_counts_once():
    assert parse_query("guard guard -x1 -x1 actor:a@b.c actor:A@B.C") == parse_query(
        "guard -x1 actor:a@b.c")


NOW = times.now_us()
MIN = 60 * 10**6


@pytest.fixture
def seeded(store):
    auth.create_org(store=store, name="Acme", org_id="acme")
    auth.create_org(store=store, name="Other", org_id="other")
    rows = [
        event(description="Created guardrail for agent", action="guardrail.created",
              actor={"email": "alice@acme.com", "id": "usr_1", "name": "Alice Chen"},
              resource={"type": "guardrail", "id": "g9", "name": "pii-filter"},
              request={"method": "PUT", "path": "/agent/a1/guardrails/g9"},
              context={"ip": "10.1.2.3"}),
        event(description="Enabled OPA policy deny-external-email", action="policy.enabled",
              actor={"email": "bob@acme.com", "id": "usr_2", "name": "Bob Silva"},
              resource={"type": "policy", "id": "pol_1"},
              request={"method": "POST", "path": "/policies/pol_1/enable"}),
        event(description="Denied request of refund-approver", action="approval.denied",
              result="denied", actor={"email": "carol@acme.com", "name": "Carol"},
              resource={"type": "approval", "id": "apr_1"}),
        event(description="Signed in", action="auth.login_failed", result="failed",
              actor={"email": "alice@acme.com", "id": "usr_1"}, context={"ip": "203.0.113.7"}),
    ]
    for i, raw in enumerate(rows):
        raw["occurred_at"] = times.format_rfc3339(NOW - (len(rows) - i) * MIN)
    ingest(store=store, org_id="acme", raw_events=rows, redactor=Redactor())
    ingest(store=store, org_id="other", raw_events=[event(description="Created guardrail")],
           redactor=Redactor())
    return store


def actions(store, q, org="acme", **kw):
    flt = build_filter(org_id=org, q=q, **kw)
    page = find_events(store=store, flt=flt, limit=50)
    assert count_events(store=store, flt=flt) == len(page.events)
    import orjson

    return [orjson.loads(e.doc)["action"] for e in page.events]


@pytest.mark.parametrize("q, expected", [
    ("", ["auth.login_failed", "approval.denied", "policy.enabled", "guardrail.created"]),
    ("guard", ["guardrail.created"]),
    ("GUARDRAIL", ["guardrail.created"]),
    ("alice", ["auth.login_failed", "guardrail.created"]),
    ("alice@acme.com", ["auth.login_failed", "guardrail.created"]),
    ("guardrails", ["guardrail.created"]),
    ("created", ["guardrail.created"]),
    ("reated", []),
    ('"created guardrail"', ["guardrail.created"]),
    ('"guardrail created for"', []),
    ('"agent guardrail"', []),
    ("alice -guard", ["auth.login_failed"]),
    ("actor:alice@acme.com", ["auth.login_failed", "guardrail.created"]),
    ("actor:usr_2", ["policy.enabled"]),
    ("actor:ali*", ["auth.login_failed", "guardrail.created"]),
    ("actor:alice", []),
    ("action:policy.*", ["policy.enabled"]),
    ("-action:policy.*", ["auth.login_failed", "approval.denied", "guardrail.created"]),
    ("result:denied", ["approval.denied"]),
    ("category:user_actions", ["approval.denied"]),
    ("resource:guardrail", ["guardrail.created"]),
    ("resource:policy:pol_1", ["policy.enabled"]),
    ("resource:policy:pol_9", []),
    ("method:put", ["guardrail.created"]),
    ("path:/policies/*", ["policy.enabled"]),
    ("ip:203.0.113.7", ["auth.login_failed"]),
    ("ip:10.*", ["guardrail.created"]),
    ("usr_1", []),
])
def test_queries_find_what_the_language_says(seeded, q, expected):
    assert actions(seeded, q, range_preset="24h") == expected


def test_another_orgs_events_never_match(seeded):
    assert actions(seeded, "guardrail", org="other") == ["guardrail.created"]
    assert len(actions(seeded, "", org="other")) == 1


def test_filters_by_category_result_and_range(seeded):
    assert actions(seeded, "", categories=["policy_changes", "user_actions"]) == [
        "approval.denied", "policy.enabled"]
    assert actions(seeded, "", results=["failed", "denied"]) == [
        "auth.login_failed", "approval.denied"]
    start = times.format_rfc3339(NOW - 3 * MIN - 1)
    end = times.format_rfc3339(NOW - 2 * MIN)
    assert actions(seeded, "", range_preset="custom", start=start, end=end) == ["policy.enabled"]


@pytest.mark.backends("sqlite")
def test_both_strategies_give_the_same_pages(store, monkeypatch):
    """The probe of the newest rows and the index-led path must agree, page by page."""
    auth.create_org(store=store, name="Acme", org_id="acme")
    from sealog.sampledata import generate_events

    raw = list(generate_events(3000, days=3))
    for i in range(0, len(raw), 1000):
        ingest(store=store, org_id="acme", raw_events=raw[i : i + 1000], redactor=Redactor())
    for q in ("guard", "alice", "agent", "denied", "trust score", "-token", "pii filter",
              "action:policy.*", "actor:usr_0007 -result:success"):
        flt = build_filter(org_id="acme", q=q, range_preset="7d")
        pages = {}
        # The probe alone (it reads every row), the index alone, and the probe then the index.
        for probe in (100_000, 0, 10):
            monkeypatch.setattr(sqlite_store, "PROBE_ROWS", probe)
            seen, cursor = [], None
            while True:
                page = find_events(store=store, flt=flt, cursor=cursor, limit=37)
                seen += [e.id for e in page.events]
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            pages[probe] = seen
        first, *others = pages.values()
        assert all(other == first for other in others)
        assert len(first) == count_events(store=store, flt=flt) > 0
        assert len(set(first)) == len(first)


def test_a_search_past_its_budget_is_stopped_and_the_reader_stays_current(store, monkeypatch):
    """The budget stops a list or count in SQLite itself; the thread's connection then reads
    the latest events, not the snapshot of the search it stopped."""
    auth.create_org(store=store, name="Acme", org_id="acme")
    from sealog.sampledata import generate_events

    raw = list(generate_events(3000, days=3))
    for i in range(0, len(raw), 1000):
        ingest(store=store, org_id="acme", raw_events=raw[i : i + 1000], redactor=Redactor())
    costly = " ".join(["ag", "ap", "00", "ac", "ke", "de", "c7", "a6", "h3", "p2"])
    for q in ("", "guard", "-token", costly, " ".join("-" + p for p in costly.split())):
        flt = build_filter(org_id="acme", q=q, range_preset="7d")
        page = find_events(store=store, flt=flt, limit=200, budget=60)
        assert page == find_events(store=store, flt=flt, limit=200)
        assert count_events(store=store, flt=flt, budget=60) == count_events(store=store,
                                                                              flt=flt)
    monkeypatch.setattr(sqlite_store, "BUDGET_CHECK_STEPS", 100)  # each of these takes more
    everything = build_filter(org_id="acme", range_preset="7d")
    with pytest.raises(QueryTooCostly, match="limit of 0 s"):
        find_events(store=store, flt=everything, limit=200, budget=0)
    for q in ("", "guard", "-token", costly, "-acme.com.x"):
        flt = build_filter(org_id="acme", q=q, range_preset="7d")
        with pytest.raises(QueryTooCostly):
            find_events(store=store, flt=flt, limit=200, budget=0)
        with pytest.raises(QueryTooCostly):
            count_events(store=store, flt=flt, budget=0)
    ingest(store=store, org_id="acme", raw_events=[event()], redactor=Redactor())
    assert count_events(store=store, flt=everything) == 3001
    assert len(find_events(store=store, flt=everything, limit=1, budget=60).events) == 1


def _crowded_events() -> list[dict]:
    """2,400 demo events squeezed into few milliseconds (up to 9 share one, some the same
    microsecond), in a shuffled order, plus long paths and non-ASCII words."""
    import random

    import uuid_utils

    from sealog.sampledata import generate_events

    start = times.now_us() - 3_600_000_000
    raw = list(generate_events(2400, days=1))
    for i, e in enumerate(raw):
        e["id"] = str(uuid_utils.uuid7())
        e["occurred_at"] = times.format_rfc3339(start + (i // 9) * 1000 + (i % 9) % 4 * 250)
        if i % 50 == 0:
            e["request"] = {"method": "POST", "path": "/deep/" + "x" * 150 + f"/{i % 3}"}
        if i % 70 == 0:
            e["description"] = "Größe geändert für Çelik"
        if i % 90 == 0:
            e["actor"] = {"id": "usr_ümlaut", "name": "Zoë Çelik", "type": "user"}
        if i % 110 == 0:
            e.update(action="guardrail.created", description="Deployment finished",
                     category="agent_operations")
    random.Random(7).shuffle(raw)
    return raw


def _store_crowded(store, raw: list[dict]) -> None:
    """Stores raw in acme in batches of 400, with a few of each batch in org other too."""
    auth.create_org(store=store, name="Other", org_id="other")
    auth.create_org(store=store, name="Acme", org_id="acme")
    for i in range(0, len(raw), 400):
        ingest(store=store, org_id="acme", raw_events=raw[i : i + 400], redactor=Redactor())
        ingest(store=store, org_id="other", raw_events=raw[i : i + 5], redactor=Redactor())


def _crowded_log(store) -> list[dict]:
    """_crowded_events, stored in store."""
    raw = _crowded_events()
    _store_crowded(store, raw)
    return raw


# Queries of every kind of the search language, with the edge cases of the index: long
# values, non-ASCII words and values, negations alone, phrases, prefixes.
CROWDED_QUERIES = [
    "guard", "alice", "invoke", "\"trust score\"", "-token", "-guard -alice",
    "größe", "çelik", "action:policy.*", "action:guardrail.deleted",
    "actor:alice.chen@acme.com", "actor:usr_0007 -result:success", "method:DELETE",
    "resource:agent", "resource:agent:agt_000*", "ip:203.0.113.7",
    "path:/policies/*", "path:/deep/" + "x" * 150 + "/1",
    "path:/deep/" + "x" * 150 + "/*", "-method:POST", "guard -action:guardrail.*",
    'actor:"zoë çelik"', "actor:zoë*", "actor:usr_ü*", "-actor:usr_ümlaut",
    "alice.chen", "alice.chen@acme.com", "security-scanner", "agt_000",
    '"trust score"', "-trust.score", "finished guardrail", "finished.guardrail",
    "deployment.finished", "pii filter", "trust sc*", '"deployment finished"',
    "GUARDRAIL", "reated", "usr_1", '"guardrail created for"', "actor:ali*", "ip:10.*",
    "resource:policy:pol_9", "method:put", "result:denied", "category:user_actions", "",
]


def _crowded_windows(raw: list[dict]) -> list[tuple[int, int | None]]:
    """Time windows over raw whose edges cut milliseconds."""
    stamps = sorted(times.parse_rfc3339(e["occurred_at"]) for e in raw)
    return [(stamps[0], None), (stamps[100] + 250, stamps[2000] - 250),
            (stamps[5] + 1, stamps[6] + 2), (stamps[900] + 999, stamps[1800] + 1)]


def _crowded_filters(raw: list[dict]) -> Iterator[EventFilter]:
    for q in CROWDED_QUERIES:
        for start_us, end_us in _crowded_windows(raw):
            for extra in ({}, {"categories": ["agent_operations", "security_events"]},
                          {"results": ["success"]}):
                end = times.format_rfc3339(end_us) if end_us else None
                yield build_filter(org_id="acme", q=q, range_preset="custom",
                                   start=times.format_rfc3339(start_us), end=end, **extra)


def _pages(store, flt: EventFilter) -> list[list[str]]:
    """The ids of every page of 37 of flt, newest first."""
    pages, cursor = [], None
    while True:
        page = find_events(store=store, flt=flt, cursor=cursor, limit=37)
        pages.append([e.id for e in page.events])
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


def _answers(store, flt: EventFilter) -> tuple:
    """Everything a store says about flt: its count, every page newest first, and the ids
    oldest first and in index order (as exports read them)."""
    return (count_events(store=store, flt=flt), _pages(store, flt),
            [d.id for d in store.iter_events_ascending(flt, batch=101)],
            [(d.index, d.id) for d in store.iter_events_in_index_order(flt, batch=101)])


def test_both_backends_give_every_query_the_same_answers(tmp_path, migrated_postgres_url,
                                                         monkeypatch):
    """The same events in a SQLite and a PostgreSQL store: every query of CROWDED_QUERIES
    (with the language's own cases), over windows that cut milliseconds and with
    category and result filters, gets the same count, the same pages in the same order,
    and the same rows in the orders exports read; PostgreSQL's pages also when they all
    come from the newest rows, when a second probe sized by the first finds them, and when
    none does."""
    from sealog.store.postgres import store as postgres_store

    raw = _crowded_events()
    stores = [open_store(f"sqlite:///{tmp_path / 'sealog.db'}"),
              open_store(migrated_postgres_url)]
    try:
        for s in stores:
            _store_crowded(s, raw)
        compared = matched = 0
        for flt in _crowded_filters(raw):
            sqlite_answers, postgres_answers = (_answers(s, flt) for s in stores)
            assert postgres_answers == sqlite_answers, flt
            for probe in (0, 10, 100_000):  # the index alone; a second probe; the rows alone
                monkeypatch.setattr(postgres_store, "PROBE_ROWS", probe)
                assert _pages(stores[1], flt) == sqlite_answers[1], (flt, probe)
            monkeypatch.undo()
            compared += 1
            matched += sqlite_answers[0] > 0
        assert compared == len(CROWDED_QUERIES) * 12 and matched > compared // 2
    finally:
        for s in stores:
            s.close()


def test_a_query_matches_in_hand_the_events_a_store_finds(store):
    """search.matches (what a stream's query filter uses on each event) takes exactly the
    events the store's search finds, for every kind of query (negations among them taking
    some events and leaving others)."""
    raw = _crowded_log(store)
    start = times.format_rfc3339(min(times.parse_rfc3339(e["occurred_at"]) for e in raw))
    docs = [orjson.loads(d.doc) for d in
            store.iter_events_by_index("acme", 0, store.log_head("acme").size)]
    negated_somewhere = False
    for q in CROWDED_QUERIES:
        flt = build_filter(org_id="acme", q=q, range_preset="custom", start=start)
        found = {d.id for d in store.iter_events_ascending(flt, batch=500)}
        in_hand = {doc["id"] for doc in docs if search.matches(flt.query, doc)}
        assert in_hand == found, q
        if any(m.negated for m in (*flt.query.text, *flt.query.fields)):
            negated_somewhere |= 0 < len(found) < len(docs)
    assert negated_somewhere


@pytest.mark.backends("sqlite")
def test_counts_from_the_index_equal_counts_from_the_rows(store):
    """The full-text index counts a window's whole milliseconds alone: every kind of query,
    windows whose edges cut milliseconds, must count what the rows say."""
    raw = _crowded_log(store)
    stamps = sorted(times.parse_rfc3339(e["occurred_at"]) for e in raw)
    conn = store._reader()
    checked = 0
    for flt in _crowded_filters(raw):
        assert count_events(store=store, flt=flt) == sqlite_store._count_rows(conn, flt), flt
        checked += 1
    assert checked == len(CROWDED_QUERIES) * 12
    for q, wanted in (("deployment.finished", 22), ("finished.guardrail", 0)):  # one field only
        flt = build_filter(org_id="acme", q=q, range_preset="custom",
                           start=times.format_rfc3339(stamps[0]))
        assert count_events(store=store, flt=flt) == wanted, q
    # The edge cases do match something: long values, non-ASCII words and values.
    for q in ('actor:"zoë çelik"', "actor:zoë*", "actor:usr_ü*", "größe", "çelik",
              "path:/deep/" + "x" * 150 + "/1", "path:/deep/" + "x" * 150 + "/*"):
        flt = build_filter(org_id="acme", q=q, range_preset="custom",
                           start=times.format_rfc3339(stamps[0]))
        assert count_events(store=store, flt=flt) > 0, q
    everything = build_filter(org_id="acme", range_preset="custom",
                              start=times.format_rfc3339(stamps[0]))
    assert count_events(store=store, flt=everything) == 2400


def test_events_sharing_a_millisecond_keep_their_order_across_pages(store, monkeypatch):
    """Index hits come in key order, pages in (occurred_at, id) order: they differ within a
    millisecond, so the index-led path must not stop inside one."""
    raw = _crowded_log(store)
    newest_first = [e["id"] for e in sorted(
        raw, key=lambda e: (times.parse_rfc3339(e["occurred_at"]), e["id"]), reverse=True)]

    def pages(q: str, limit: int) -> list[str]:
        flt = build_filter(org_id="acme", q=q, range_preset="7d")
        seen, cursor = [], None
        while True:
            page = find_events(store=store, flt=flt, cursor=cursor, limit=limit)
            seen += [e.id for e in page.events]
            if page.next_cursor is None:
                return seen
            cursor = page.next_cursor

    assert pages("", 25) == newest_first
    for q in ("resource:agent", "guard", "-token alice"):
        # find_events asks for one more than the page, to know whether another follows.
        for limit, first_hits in ((25, 256), (200, 256), (25, 3), (7, 9), (25, 28)):
            monkeypatch.setattr(sqlite_store, "PROBE_ROWS", 100_000)  # every row, no index
            expected = pages(q, limit)
            monkeypatch.setattr(sqlite_store, "PROBE_ROWS", 0)  # the index alone
            monkeypatch.setattr(sqlite_store, "FIRST_HITS", first_hits)
            assert pages(q, limit) == expected, (q, limit, first_hits)
            assert expected == [i for i in newest_first if i in set(expected)]


def test_range_presets_and_time_zone():
    month = build_filter(org_id="acme", range_preset="month", tz="Pacific/Auckland")
    assert month.time_range.end_us is None
    with pytest.raises(times.TimeError):
        build_filter(org_id="acme", range_preset="month", tz="Mars/Olympus")
    with pytest.raises(times.TimeError):  # found by schemathesis: once a 500
        build_filter(org_id="acme", range_preset="month", tz="0" * 300)
    with pytest.raises(times.TimeError):
        build_filter(org_id="acme", range_preset="custom")
    with pytest.raises(times.TimeError):
        build_filter(org_id="acme", range_preset="week")
    with pytest.raises(search.FilterError):
        build_filter(org_id="acme", categories=["nope"])


@pytest.mark.backends("sqlite")
def test_a_millisecond_holding_more_events_than_keys_refuses_the_batch(store, monkeypatch):
    monkeypatch.setattr(sqlite_store, "TIME_KEY_BITS", 2)  # 4 keys a millisecond
    monkeypatch.setattr(sqlite_store, "PER_MILLISECOND", 4)
    auth.create_org(store=store, name="Acme", org_id="acme")
    at = times.format_rfc3339(times.now_us() - 60_000_000)
    same = [event(occurred_at=at) for _ in range(3)]
    ingest(store=store, org_id="acme", raw_events=same, redactor=Redactor())
    with pytest.raises(sqlite_store.Conflict, match="at one millisecond"):
        ingest(store=store, org_id="acme", raw_events=same[:2], redactor=Redactor())
    everything = build_filter(org_id="acme", range_preset="7d")
    assert count_events(store=store, flt=everything) == 3  # nothing of the refused batch
    ingest(store=store, org_id="acme", raw_events=same[:1], redactor=Redactor())
    assert count_events(store=store, flt=everything) == 4


_field_text = st.one_of(st.none(), st.text(max_size=30), st.sampled_from(
    ["alice.chen@acme.com", "agt_0007", "/policies/pol_003", "---", "Zoë Çelik", "a|b"]))


@given(st.lists(_field_text, min_size=8, max_size=8))
def test_word_pairs_of_an_event_are_those_of_its_search_text(values):
    description, action, email, name, rtype, rid, rname, path = values
    doc = {"description": description, "action": action,
           "actor": {"email": email, "name": name},
           "resource": {"type": rtype, "id": rid, "name": rname}, "request": {"path": path}}
    text, pairs = search.search_words(doc)
    assert pairs == search.word_pairs(text)
    fields = [words(v) for v in values if words(v)]
    assert text == " " + " | ".join(" ".join(w) for w in fields) + " "
    assert pairs.split() == [f"{a}_{b}" for w in fields for a, b in itertools.pairwise(w)]


def test_the_token_plan_names_each_part_of_a_query_by_its_index_tokens():
    """The plan every backend renders: words, consecutive pairs and qualifier tokens."""
    from sealog.search import field_token
    from sealog.store.tokenplan import FIELDS, PAIRS, TEXT, Part, Token, token_plan

    flt = build_filter(org_id="acme", range_preset="7d", categories=["agent_operations"],
                       q='"pii filter policy" guard actor:dana@acme.com -result:denied')
    plan = token_plan(flt)
    assert plan is not None
    assert plan.terms == (
        Part(PAIRS, ((Token("pii_filter"),), (Token("filter_policy"),))),
        Part(TEXT, ((Token("guard", prefix=True),),)),
        Part(FIELDS, (tuple(Token(field_token(c, "dana@acme.com"))
                            for c in ("actor_email", "actor_id", "actor_name")),)),
    )
    assert plan.filters == (Part(FIELDS, ((Token(field_token("category",
                                                              "agent_operations")),),)),)
    assert plan.excluded == (Part(FIELDS, ((Token(field_token("result", "denied")),),)),)
    assert not plan.exact  # three words in a phrase are decided on the row
    assert token_plan(build_filter(org_id="acme", range_preset="7d", q="")) is None
