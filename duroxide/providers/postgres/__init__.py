"""PostgreSQL storage provider: many processes on many machines sharing one database.

    provider = PostgresProvider.connect("postgresql://user@host/db")            # schema "duroxide"
    tenant = PostgresProvider.connect_with_schema(url, "tenant_a", max_size=20)

Each tenant lives in its own schema (created and migrated on connect, safely from many pods at
once). Every provider operation is one round trip (a statement or one plpgsql function call),
the batch operations included: a dispatcher claims up to as many items as it has free slots,
and group-commits several acks, in one call and one transaction each. Dequeues are one ordered
index scan with ``FOR UPDATE SKIP LOCKED`` over rows that are claimable now (an instance-level
claim table for the orchestrator queue), so they cost the same whatever the backlog and never
wait for, or come back empty because of, another transaction. Lock times come from the
database clock; an ack is fenced on the history its turn was computed from. LISTEN/NOTIFY
wakes dispatchers in other processes (``listener``); polling stays the source of truth. Driver
errors surface as ``ProviderError(operation, message, retryable=...)``.

Nothing depends on session state: every statement names the schema and every function pins its
``search_path``, and a statement timeout is set per transaction, so tenants may share server
connections behind a transaction-pooling PgBouncer (with ``prepare_threshold=None`` unless the
pooler tracks prepared statements).

Options (keyword, or environment variable; keywords win): ``min_size``
(``DUROXIDE_PG_POOL_MIN_SIZE``, default 1), ``max_size`` (``DUROXIDE_PG_POOL_MAX_SIZE``, 10),
``pool_timeout_s`` (``DUROXIDE_PG_POOL_TIMEOUT``, 30), ``connect_timeout_s``
(``DUROXIDE_PG_CONNECT_TIMEOUT``, 10), ``statement_timeout_ms``
(``DUROXIDE_PG_STATEMENT_TIMEOUT_MS``, server default), ``prepare_threshold`` (0: prepare
every statement; None behind a transaction-pooling PgBouncer), ``read_attempts`` (3),
``migrate`` (``DUROXIDE_PG_MIGRATE``, default on: create or upgrade the schema on connect; off,
only check that it is at this release's version or newer — for roles without DDL rights,
with ``duroxide migrate`` run once by a privileged job).

Autoscaling with KEDA: the schema has a stable function returning the backlog (ready plus
in-flight items) of one queue, usable from any connection (it pins its own search_path)::

    duroxide_backlog(queue text, tag text DEFAULT NULL) RETURNS bigint
    -- queue 'orchestrator': visible or locked orchestrator messages (tag ignored)
    -- queue 'worker': visible or locked activities with that tag (NULL: untagged, '*': all)

A ``ScaledObject`` trigger for a pool of GPU workers of tenant ``duroxide``::

    triggers:
      - type: postgresql
        metadata:
          query: "SELECT duroxide.duroxide_backlog('worker', 'gpu')"
          targetQueryValue: "20"
        authenticationRef: {name: duroxide-pg}
"""

from duroxide.providers.postgres.provider import PostgresProvider

__all__ = ["PostgresProvider"]
