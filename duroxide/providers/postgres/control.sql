-- Statements outside the provider operations: creating and upgrading a schema (migrations.py)
-- and the LISTEN connection (listener.py). Names in {schema} / {channel} are replaced with
-- psycopg.sql.Identifier; values are always bound parameters. (Literal braces are doubled.)

-- name: schema_exists
SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %s

-- name: migration_table
-- The tracking table of the schema named by the parameter, or NULL when it has none.
SELECT pg_catalog.to_regclass(pg_catalog.format('%%I.%%I', %s::text, 'duroxide_migrations'))

-- name: migration_version
SELECT coalesce(max(version), 0) FROM {schema}.duroxide_migrations

-- name: lock_schema
-- Serializes every schema change of one schema: (class "Duro", hashtext(schema name)).
SELECT pg_catalog.pg_advisory_xact_lock(%s, pg_catalog.hashtext(%s))

-- name: create_schema
CREATE SCHEMA {schema}

-- name: set_search_path
-- The current transaction only; pg_temp last, never searched first.
SET LOCAL search_path TO {schema}, pg_temp

-- name: create_tracking_table
CREATE TABLE IF NOT EXISTS {schema}.duroxide_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)

-- name: record_migration
INSERT INTO {schema}.duroxide_migrations (version, name) VALUES (%s, %s)

-- name: listen
LISTEN {channel}

-- name: listener_session
-- A notification is delivered at commit whether or not the commit record reaches the disk
-- (and means nothing after a crash): the listener's commits never wait for a WAL flush.
SELECT pg_catalog.set_config('synchronous_commit', 'off', false)

-- name: notify_many
-- One batch of payloads, each on its own channel: one round trip, one transaction.
SELECT pg_catalog.pg_notify(c, p) FROM unnest(%s::text[], %s::text[]) AS t (c, p)

-- name: keepalive
SELECT 1

-- name: session_statement_timeout
-- For the operator's checks (duroxide doctor): the whole session, in milliseconds.
SELECT pg_catalog.set_config('statement_timeout', %s, false)

-- name: server_version
SHOW server_version
