"""What each table of the PostgreSQL schema is on a sharded PostgreSQL (Citus): distributed
by org, replicated to every node, or kept on the coordinator. docs/operations.md shows the
statements; the tests hold the migrations' catalog to Citus's rules with these."""

from __future__ import annotations

# Distributed tables and their distribution column, in the order they are distributed (a
# table after those its foreign keys name). All are co-located with orgs: the rows of one
# org, in every table, live on one node, so a batch (the org's row, its events, tree nodes)
# is a single-node transaction.
DISTRIBUTED_TABLES: dict[str, str] = {
    "orgs": "id",
    "users": "org_id",
    "api_keys": "org_id",
    "sessions": "org_id",
    "events": "org_id",
    "event_docs": "org_id",
    "tree_nodes": "org_id",
    "checkpoints": "org_id",
    "exports": "org_id",
    "login_failures": "org_id",
    "streams": "org_id",
    "retention": "org_id",
    "legal_holds": "org_id",
}

# Small tables of no org, copied to every node: the log's verifier keys.
REFERENCE_TABLES: tuple[str, ...] = ("log_keys",)

# Kept on the coordinator alone: the migration runner's record.
LOCAL_TABLES: tuple[str, ...] = ("schema_migrations",)

# Indexes of distributed tables that do not start with org_id, because they find a row
# before its org is known. On Citus a lookup by them asks every node.
CROSS_ORG_INDEXES: dict[str, str] = {
    "users_id": "a session or an API key names its user by id",
    "api_keys_id": "a request's API key is found by the id in its secret",
    "sessions_token": "a request's session is found by its token",
    "exports_id": "a worker renews and finishes its job by id",
}


def citus_statements() -> list[str]:
    """The statements that distribute the schema on Citus, in the order they must run."""
    statements = [f"SELECT create_reference_table('{table}');" for table in REFERENCE_TABLES]
    first = next(iter(DISTRIBUTED_TABLES))
    for table, column in DISTRIBUTED_TABLES.items():
        colocation = "" if table == first else f", colocate_with => '{first}'"
        statements.append(f"SELECT create_distributed_table('{table}', '{column}'{colocation});")
    return statements
