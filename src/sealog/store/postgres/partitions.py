"""Partition upkeep: a month's partition of events and event_docs for every month from the
one before now to MONTHS_AHEAD after it, and for every month that has rows in the DEFAULT
partitions, which are moved there. Partitions are by received_at (docs/operations.md)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import psycopg

from sealog import events, times

PARTITIONED_TABLES = ("events", "event_docs")
MONTHS_AHEAD = 3
# Attaching a partition takes the DEFAULT partition's lock, which waits for the queries
# reading it; past this the upkeep gives up (nothing made, nothing moved) rather than
# hold up the queries queued behind it. The next run tries again, months ahead of need.
LOCK_TIMEOUT = "2s"

_EPOCH = date(1970, 1, 1)
# The months upkeep can name (datetime's years 1 to 9999); a row received outside them
# stays in the DEFAULT partition.
_FIRST_MONTH = (1, 1)
_END_MONTH = (10000, 1)


def received_lower_bound(occurred_start_us: int) -> int:
    """A received_at bound that a search for events occurred at or after occurred_start_us
    may add, so that the partitions received before it are not read: ingest refuses events
    more than events.MAX_FUTURE_US ahead of their receipt (constraint
    events_occurred_by_receipt)."""
    return occurred_start_us - events.MAX_FUTURE_US


def month_of(us: int) -> tuple[int, int]:
    """The (year, month) in UTC of a time in microseconds."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)
    return moment.year, moment.month


def add_months(month: tuple[int, int], by: int) -> tuple[int, int]:
    """The (year, month) `by` months after month (before it when negative)."""
    n = month[0] * 12 + month[1] - 1 + by
    return n // 12, n % 12 + 1


def month_start_us(month: tuple[int, int]) -> int:
    """The first microsecond of a (year, month), UTC."""
    if month == _END_MONTH:
        days = (date.max - _EPOCH).days + 1
    else:
        days = (date(month[0], month[1], 1) - _EPOCH).days
    return days * 86_400 * 10**6


def partition_name(table: str, month: tuple[int, int]) -> str:
    """e.g. events_y2026m01."""
    return f"{table}_y{month[0]:04d}m{month[1]:02d}"


def ensure_partitions(conn: psycopg.Connection, *, now_us: int | None = None,
                      months_ahead: int = MONTHS_AHEAD) -> list[str]:
    """Makes each missing month's partition of the PARTITIONED_TABLES, from the month before
    now to months_ahead after it and for every month with rows in a DEFAULT partition
    (moved into it); returns their names. Runs in the caller's transaction, which should
    hold migrations.schema_change's lock; raises psycopg.errors.LockNotAvailable past
    LOCK_TIMEOUT."""
    conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    current = month_of(times.now_us() if now_us is None else now_us)
    months = {add_months(current, k) for k in range(-1, months_ahead + 1)}
    for table in PARTITIONED_TABLES:
        months |= _months_in_default(conn, table)
    made = []
    for month in sorted(months):
        for table in PARTITIONED_TABLES:
            if _add_partition(conn, table, month):
                made.append(partition_name(table, month))
    return made


def ensure_months(conn: psycopg.Connection, start_us: int, end_us: int) -> list[str]:
    """Makes each missing month's partition of the PARTITIONED_TABLES from the month of
    start_us to that of end_us, but none past MONTHS_AHEAD after now (a later row waits in
    DEFAULT for upkeep); returns their names. Runs as ensure_partitions does."""
    conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    month = max(month_of(start_us), _FIRST_MONTH)
    last = min(month_of(end_us), add_months(month_of(times.now_us()), MONTHS_AHEAD))
    made = []
    while month <= last:
        for table in PARTITIONED_TABLES:
            if _add_partition(conn, table, month):
                made.append(partition_name(table, month))
        month = add_months(month, 1)
    return made


def _months_in_default(conn: psycopg.Connection, table: str) -> set[tuple[int, int]]:
    # Whole seconds: month boundaries are, and the division stays exact.
    rows = conn.execute(
        "SELECT DISTINCT extract(year FROM t)::int, extract(month FROM t)::int FROM ("
        "SELECT to_timestamp(floor(received_at / 1000000.0)) AT TIME ZONE 'UTC' AS t "
        f"FROM {table}_default WHERE received_at >= %s AND received_at < %s) AS received",
        (month_start_us(_FIRST_MONTH), month_start_us(_END_MONTH)),
    ).fetchall()
    return {(year, month) for year, month in rows}


def _add_partition(conn: psycopg.Connection, table: str, month: tuple[int, int]) -> bool:
    """Makes table's partition for month unless it exists, moving into it the rows of that
    month from the DEFAULT partition; False when it existed."""
    name = partition_name(table, month)
    if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone() == (True,):
        return False
    low, high = month_start_us(month), month_start_us(add_months(month, 1))
    default = f"{table}_default"
    # Attaching takes this lock anyway; taken first, no row can reach the DEFAULT partition
    # between the move and the attaching.
    conn.execute(f"LOCK TABLE {default} IN ACCESS EXCLUSIVE MODE")
    conn.execute(f"CREATE TABLE {name} (LIKE {default} INCLUDING ALL)")
    conn.execute(
        f"WITH moved AS (DELETE FROM {default} WHERE received_at >= %s AND received_at < %s "
        f"RETURNING *) INSERT INTO {name} SELECT * FROM moved", (low, high),
    )
    # A constraint that implies the partition's bounds spares ATTACH a scan of the new table.
    conn.execute(f"ALTER TABLE {name} ADD CONSTRAINT {name}_bounds "
                 f"CHECK (received_at >= {low} AND received_at < {high})")
    conn.execute(f"ALTER TABLE {table} ATTACH PARTITION {name} "
                 f"FOR VALUES FROM ({low}) TO ({high})")
    conn.execute(f"ALTER TABLE {name} DROP CONSTRAINT {name}_bounds")
    return True


def drop_emptied(conn: psycopg.Connection, *, now_us: int | None = None) -> list[str]:
    """Drops the month partitions of the PARTITIONED_TABLES that purges emptied: every table
    of the month without a row, the month before the one before now or older (upkeep keeps
    the month before now, and a row of a dropped month would wait in DEFAULT for upkeep to
    make its partition again). Returns their names. Runs as ensure_partitions does."""
    conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    keep_from = add_months(month_of(times.now_us() if now_us is None else now_us), -1)
    months = set()
    for (name,) in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'events'").fetchall():
        if len(name) == len("events_y0000m00") and name.startswith("events_y"):
            months.add((int(name[8:12]), int(name[13:15])))
    dropped = []
    for month in sorted(m for m in months if m < keep_from):
        names = [partition_name(table, month) for table in PARTITIONED_TABLES]
        if all(conn.execute(f"SELECT NOT EXISTS (SELECT 1 FROM {name})").fetchone() == (True,)
               for name in names):
            for name in names:
                conn.execute(f"DROP TABLE {name}")
            dropped += names
    return dropped
