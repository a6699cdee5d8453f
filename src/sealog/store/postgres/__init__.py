"""The PostgreSQL store's parts: schema migrations, partition upkeep, search tokens, the
tables' roles on a sharded PostgreSQL, and the store (store.py), in progress: it has no
events yet, so open_store still refuses postgresql:// URLs."""
