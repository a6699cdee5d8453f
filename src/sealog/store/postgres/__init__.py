"""The PostgreSQL store's parts: schema migrations, partition upkeep, search tokens and the
tables' roles on a sharded PostgreSQL. The store itself is in progress: open_store still
refuses postgresql:// URLs."""
