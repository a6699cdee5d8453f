-- Who made each API key: the user signed in when it was made, or the user who made the key
-- that made it. A key is bounded by its creator's current role (auth.KeyAuthenticator).
-- NULL for a key the operator made with `sealog keys create`, and for every key made before
-- this migration (their creator was not recorded).
ALTER TABLE api_keys ADD COLUMN created_by TEXT REFERENCES users(id);
CREATE INDEX api_keys_creator ON api_keys(created_by) WHERE created_by IS NOT NULL;
