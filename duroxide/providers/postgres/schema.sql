-- The current duroxide PostgreSQL schema, applied whole to a new, empty schema. Must stay equal
-- to migrations/*.sql applied in order (tests/providers/postgres/test_migrations.py compares the
-- catalogs).
--
-- It runs with search_path set to the tenant's schema (then pg_temp), so names here are
-- unqualified; every function pins that search_path (SET search_path FROM CURRENT), and every
-- statement the provider sends names the schema explicitly. Nothing depends on a session's
-- search_path, so tenants can share pooled connections (e.g. behind a transaction-pooling
-- PgBouncer) without their rows ever mixing.
--
-- Times are integer milliseconds since the epoch from the database clock (duroxide_now_ms);
-- 0 means "never locked" and 9223372036854775807 "never visible". Ids, names, keys and tags are
-- opaque text with byte ("C") collation, so ordering and paging match SQLite exactly and index
-- comparisons are plain memcmp. There are no foreign keys: the functions below are the only
-- writers and insert parents first; a foreign-key check would add a locked lookup per history
-- row to every turn.
--
-- Queues. A dequeue must cost the same whatever the backlog, so both queues keep an index whose
-- claimable range holds only claimable rows: a locked row's visible_at is its lock expiry, which
-- moves it out of the range "visible_at <= now" while it is held and back into it exactly when
-- the lock expires. The orchestrator queue is claimed per instance, through instance_queue (one
-- row per instance with pending messages); its messages are read by instance.
--
-- Plans. Every statement of the hot functions is a keyed lookup or a short ordered index range
-- over a handful of rows, so a nested loop over index scans is always the right plan. The
-- functions pin it (SET clauses: generic plans, no seq scans, bitmap scans, hash or merge joins,
-- hash aggregation, JIT), so it never depends on table statistics: a plan is cached for a
-- connection's lifetime, and one built while the tables were new and empty would scan them
-- whole once they are large; a generic estimate over a large table would also start JIT
-- compilation, hundreds of milliseconds per call. Each statement also pays its plan's start-up
-- even when it writes nothing, so rarely needed parts are separate statements run on demand.
--
-- Locks, in the order every transaction takes them, so that concurrent turns, activity acks,
-- enqueues and deletions never deadlock: instance_queue rows first (a batch takes all of its
-- rows in one statement, sorted by instance id), then worker_queue rows (by id), then the rest.

-- ============================================================================================
-- tables
-- ============================================================================================

-- One row per instance that has completed at least one turn (enqueueing never creates it).
-- Rewritten by every turn without touching an indexed column: a HOT update, hence the free
-- space left on each page.
CREATE TABLE instances (
    instance_id text COLLATE "C" PRIMARY KEY,
    orchestration_name text COLLATE "C" NOT NULL,
    orchestration_version text COLLATE "C" NOT NULL,
    status text NOT NULL,                       -- Running | Completed | Failed
    current_execution_id bigint NOT NULL,
    output text,
    error text,                                 -- JSON of ErrorDetails.to_json()
    custom_status text,
    custom_status_version bigint NOT NULL DEFAULT 0,
    parent_instance_id text COLLATE "C",
    parent_execution_id bigint,
    parent_event_id bigint,
    trace_context text,
    last_dispatcher text,                       -- dispatcher that acked the last turn
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    completed_at bigint                         -- set while the status is terminal
) WITH (fillfactor = 80);
-- Instance trees (sub-orchestrations) are walked by parent.
CREATE INDEX instances_parent ON instances (parent_instance_id)
    WHERE parent_instance_id IS NOT NULL;

-- One row per execution (1, then 2, 3... after each continue-as-new). event_count is what an
-- ack is fenced on (see duroxide_ack_turn). Updated by every turn (HOT).
CREATE TABLE executions (
    instance_id text COLLATE "C" NOT NULL,
    execution_id bigint NOT NULL,
    status text NOT NULL,                       -- Running | Completed | Failed | ContinuedAsNew
    output text,
    started_at bigint NOT NULL,
    completed_at bigint,
    event_count bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (instance_id, execution_id)
) WITH (fillfactor = 80);

-- Append-only history; the primary key is what rejects a duplicate event id in an ack.
CREATE TABLE history (
    instance_id text COLLATE "C" NOT NULL,
    execution_id bigint NOT NULL,
    event_id bigint NOT NULL,
    kind text NOT NULL,
    source_event_id bigint,
    timestamp_ms bigint NOT NULL,
    data text NOT NULL,                         -- JSON object of the kind-specific fields
    PRIMARY KEY (instance_id, execution_id, event_id)
);

-- The orchestrator queue's claim table: one row per instance that has queued messages (or a
-- lock). visible_at is when the instance can be claimed: its earliest due message while
-- unlocked, the lock's expiry while locked (a turn, or an instance parked by a delayed
-- abandon). A fetch claims the first rows of instance_queue_claim with FOR UPDATE SKIP
-- LOCKED; an enqueue lowers visible_at (unless locked); an ack or abandon recomputes it from
-- the instance's remaining messages, or deletes the row when none is left. The lock token is
-- "<uuid>:<instance_id>", so every lookup by token is a primary-key lookup. execution_id and
-- history_len record what the lock's fetch returned: the ack is refused unless the execution
-- still has exactly that many events (a turn computed from a stale history never commits).
-- Small and hot: autovacuum visits it early so dead index entries do not pile up in the range
-- every fetch walks.
CREATE TABLE instance_queue (
    instance_id text COLLATE "C" PRIMARY KEY,
    visible_at bigint NOT NULL,
    lock_token text,
    locked_until bigint NOT NULL DEFAULT 0,
    dispatcher_id text,
    execution_id bigint NOT NULL DEFAULT 0,
    history_len bigint NOT NULL DEFAULT 0,
    start_bias bigint NOT NULL DEFAULT 0
) WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.01,
        autovacuum_vacuum_threshold = 1000, autovacuum_analyze_scale_factor = 0.05);
-- Claim order: visible_at + start_bias, where start_bias is duroxide_start_bias_ms() from a
-- client's start until the instance is first claimed, else 0 (see duroxide_start_bias_ms).
-- visible_at is the second column so that the visibility filter is checked in the index.
CREATE INDEX instance_queue_claim ON instance_queue ((visible_at + start_bias), visible_at);

-- The instance locks, live and expired (for operators; nothing reads it on a hot path).
CREATE VIEW instance_locks AS
SELECT r.instance_id, r.lock_token, r.locked_until, r.dispatcher_id
FROM instance_queue AS r
WHERE r.lock_token IS NOT NULL;

-- Messages addressed to instances, read only through their instance. A timer is a message
-- whose visible_at is its fire time. lock_token stamps the messages a fetch handed out (and
-- attempt_count counts the fetches): no indexed column changes, a HOT update. The ack deletes
-- the stamped messages. id orders messages that became due in the same millisecond.
CREATE TABLE orchestrator_queue (
    id bigint GENERATED ALWAYS AS IDENTITY,
    instance_id text COLLATE "C" NOT NULL,
    kind text NOT NULL,
    payload text NOT NULL,
    visible_at bigint NOT NULL,
    attempt_count integer NOT NULL DEFAULT 0,
    lock_token text,
    enqueued_at bigint NOT NULL
) WITH (fillfactor = 85, autovacuum_vacuum_scale_factor = 0.02,
        autovacuum_analyze_scale_factor = 0.05);
CREATE INDEX orchestrator_queue_instance ON orchestrator_queue (instance_id, visible_at, id);

-- One row per scheduled activity, peek-locked by a worker. visible_at is when it can be
-- claimed: enqueued_at (or the end of an abandon's delay) while unlocked, the lock's expiry
-- while locked (locked_until 0: never locked). Untagged and tagged activities have separate
-- indexes, so a worker pool of one tag never walks another's backlog. The lock token is
-- "<id>.<uuid>", so every lookup by token is a primary-key lookup.
CREATE TABLE worker_queue (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instance_id text COLLATE "C" NOT NULL,
    execution_id bigint NOT NULL,
    activity_id bigint NOT NULL,
    payload text NOT NULL,                      -- ActivityWorkItem JSON
    session_id text COLLATE "C",
    tag text COLLATE "C",
    visible_at bigint NOT NULL,
    enqueued_at bigint NOT NULL,
    lock_token text,
    locked_until bigint NOT NULL DEFAULT 0,
    attempt_count integer NOT NULL DEFAULT 0,
    UNIQUE (instance_id, execution_id, activity_id)
) WITH (fillfactor = 85, autovacuum_vacuum_scale_factor = 0.02,
        autovacuum_analyze_scale_factor = 0.05);
CREATE INDEX worker_queue_untagged ON worker_queue (visible_at, id) WHERE tag IS NULL;
CREATE INDEX worker_queue_tagged ON worker_queue (tag, visible_at, id) WHERE tag IS NOT NULL;
CREATE INDEX worker_queue_session ON worker_queue (session_id)
    WHERE session_id IS NOT NULL;

-- Session affinity: a session is owned by one worker while locked_until is in the future.
CREATE TABLE sessions (
    session_id text COLLATE "C" PRIMARY KEY,
    owner_id text COLLATE "C" NOT NULL,
    locked_until bigint NOT NULL,
    last_activity_at bigint NOT NULL
);
CREATE INDEX sessions_owner ON sessions (owner_id);

-- Per-instance key/value state written by turns and read by clients.
CREATE TABLE kv_store (
    instance_id text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    value text NOT NULL,
    updated_at bigint NOT NULL,
    PRIMARY KEY (instance_id, key)
);

-- ============================================================================================
-- helpers
-- ============================================================================================

-- The provider's clock: the database's wall clock in integer milliseconds.
CREATE FUNCTION duroxide_now_ms() RETURNS bigint
LANGUAGE sql VOLATILE PARALLEL SAFE
AS $$ SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint $$;

-- Admission order. A start enqueued by a client is claimed after the work of running instances
-- (timers, activity completions, events) that became claimable less than this many
-- milliseconds after it: a burst of new starts cannot hold back instances already in flight,
-- and a start waits at most this long behind them. It changes the order only: when nothing
-- else is claimable a start is claimed at once.
CREATE FUNCTION duroxide_start_bias_ms() RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT 1000::bigint $$;

-- The instance an orchestration lock token ("<uuid>:<instance_id>") belongs to.
CREATE FUNCTION duroxide_token_instance(p_token text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT substr(p_token, strpos(p_token, ':') + 1) $$;

-- The worker_queue row a work item lock token ("<id>.<uuid>") belongs to; NULL if malformed.
CREATE FUNCTION duroxide_token_work_id(p_token text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN p_token ~ '^[0-9]{1,18}\.' THEN split_part(p_token, '.', 1)::bigint END
$$;

-- Recompute the claim rows of p_ids that nobody holds (unlocked, expired, or held by one of
-- p_tokens): unlocked and visible from their earliest message, or deleted when no message is
-- left. The caller holds the rows' locks, so no message can slip in unseen: an enqueue commits
-- its message together with its upsert of the claim row, which waits for that lock.
CREATE FUNCTION duroxide_refresh_ready(p_ids text[], p_tokens text[], p_now bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET enable_hashagg = off
SET jit = off
AS $$
DECLARE
    v_count bigint;
BEGIN
    WITH target AS (
        SELECT r.instance_id,
               (SELECT min(q.visible_at) FROM orchestrator_queue AS q
                WHERE q.instance_id = r.instance_id) AS next_at
        FROM instance_queue AS r
        WHERE r.instance_id = ANY (p_ids)
          AND (r.lock_token IS NULL OR r.locked_until <= p_now
               OR r.lock_token = ANY (p_tokens))),
    kept AS (
        UPDATE instance_queue AS r
        SET visible_at = t.next_at, lock_token = NULL, locked_until = 0, dispatcher_id = NULL
        FROM target AS t
        WHERE r.instance_id = t.instance_id AND t.next_at IS NOT NULL),
    dropped AS (
        DELETE FROM instance_queue AS r
        USING target AS t
        WHERE r.instance_id = t.instance_id AND t.next_at IS NULL)
    SELECT count(*) INTO v_count FROM target;
END
$$;

-- ============================================================================================
-- orchestrator queue: each function is one call, so one round trip and one transaction
-- ============================================================================================

-- Lock up to p_max instances that have due messages and no live lock (an expired lock is
-- taken over), stamp all their due messages with the new token (attempt_count + 1) and return
-- them with the instance state and the current execution's history (NULL when p_dispatcher
-- acked the instance's previous turn: that dispatcher has it cached).
-- The claim is one ordered scan of instance_queue_claim (visible_at + start_bias, see
-- duroxide_start_bias_ms) that skips rows other transactions hold, so it neither waits nor
-- comes back empty while claimable work exists, and costs the same whatever the backlog of
-- locked or future work: only rows due within the bias share its range, and their visibility
-- is checked in the index, without a heap visit. State and history are read by a second
-- statement, whose snapshot is taken after the locks: a takeover after lock expiry sees the
-- previous holder's committed turn. The commit is asynchronous: losing it in a server crash
-- only undoes the lock (and the attempt counts), and the ack that follows flushes it anyway.
CREATE FUNCTION duroxide_fetch_orchestration_items(
    p_lock_timeout_ms bigint, p_max integer, p_dispatcher_id text)
RETURNS TABLE (
    o_instance_id text, o_lock_token text, o_now_ms bigint, o_has_instance boolean,
    o_name text, o_version text, o_status text, o_execution_id bigint, o_custom_status text,
    o_custom_status_version bigint, o_history_len bigint, o_history json, o_messages json)
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET enable_hashagg = off
SET jit = off
AS $$
DECLARE
    v_now bigint := duroxide_now_ms();
    v_ids text[];
    v_returned integer;
    v_want integer := p_max;
BEGIN
    -- Asynchronous commit (see above); never wait long for a lock (see below).
    PERFORM set_config('synchronous_commit', 'off', true), set_config('lock_timeout', '100', true);
    -- Fewer than p_max instances only when no more is claimable: a claimed row without a due
    -- message took a place in the batch, so the places left are claimed again, until a claim
    -- finds none. Each round ends: the rows it returned are locked past v_now, and its rows
    -- without a due message are put back after v_now or dropped. (The bound on rounds is a
    -- safety net only; a lock timeout of 0 or less would leave returned rows claimable.)
    FOR v_round IN 1..1000 LOOP
        -- Sticky turns: an instance whose last turn another dispatcher acked is left to that
        -- dispatcher (which holds its history in memory) for the first 50 ms of being claimable;
        -- after that, or when this caller names no dispatcher, anyone takes it (the owner may be
        -- busy or gone). A turn that moves reloads the whole history.
        SELECT array_agg(c.instance_id) INTO v_ids
        FROM (SELECT r.instance_id
              FROM instance_queue AS r
              WHERE (r.visible_at + r.start_bias) <= v_now + duroxide_start_bias_ms()
                AND r.visible_at <= v_now
                AND (p_dispatcher_id IS NULL
                     OR r.visible_at <= v_now - 50
                     OR NOT EXISTS (SELECT 1 FROM instances AS i
                                    WHERE i.instance_id = r.instance_id
                                      AND i.last_dispatcher <> p_dispatcher_id))
              ORDER BY (r.visible_at + r.start_bias)
              LIMIT v_want
              FOR UPDATE OF r SKIP LOCKED) AS c;
        IF v_ids IS NULL THEN
            RETURN;
        END IF;
        -- The claimed rows are this transaction's; their messages can only be held by an
        -- administrative operation that started before the claim row existed (a deletion):
        -- rather than wait for it, the statement fails on the lock timeout (lock_not_available)
        -- and the provider skips the batch this time. (Catching the error here would cost a
        -- subtransaction, and its transaction id, on every fetch.)
        RETURN QUERY
        WITH state AS (
            SELECT k.instance_id, i.instance_id IS NOT NULL AS has_instance,
                   i.orchestration_name, i.orchestration_version, i.status,
                   coalesce(i.current_execution_id, 1) AS execution_id, i.custom_status,
                   i.custom_status_version, i.last_dispatcher,
                   coalesce(e.event_count, 0) AS history_len
            FROM unnest(v_ids) AS k(instance_id)
            LEFT JOIN instances AS i ON i.instance_id = k.instance_id
            LEFT JOIN executions AS e
              ON e.instance_id = k.instance_id AND e.execution_id = i.current_execution_id
            WHERE EXISTS (SELECT 1 FROM orchestrator_queue AS q
                          WHERE q.instance_id = k.instance_id AND q.visible_at <= v_now)),
        locked AS (
            UPDATE instance_queue AS r
            SET lock_token = gen_random_uuid()::text || ':' || r.instance_id,
                locked_until = v_now + p_lock_timeout_ms,
                visible_at = v_now + p_lock_timeout_ms,
                start_bias = 0,
                dispatcher_id = p_dispatcher_id,
                execution_id = s.execution_id,
                history_len = s.history_len
            FROM state AS s
            WHERE r.instance_id = s.instance_id
            RETURNING r.instance_id, r.lock_token),
        stamped AS (
            UPDATE orchestrator_queue AS q
            SET lock_token = k.lock_token, attempt_count = q.attempt_count + 1
            FROM locked AS k
            WHERE q.instance_id = k.instance_id AND q.visible_at <= v_now
            RETURNING q.instance_id, q.visible_at, q.id, q.kind, q.payload, q.attempt_count),
        messages AS (
            -- in the order the messages became due, so a race is won by what was ready first
            SELECT m.instance_id,
                   json_agg(json_build_array(m.id, m.kind, m.payload, m.attempt_count)
                            ORDER BY m.visible_at, m.id) AS items
            FROM stamped AS m
            GROUP BY m.instance_id)
        SELECT k.instance_id, k.lock_token, v_now, s.has_instance, s.orchestration_name,
               s.orchestration_version, s.status, s.execution_id, s.custom_status,
               s.custom_status_version, s.history_len,
               CASE WHEN p_dispatcher_id IS NULL
                         OR s.last_dispatcher IS DISTINCT FROM p_dispatcher_id THEN
                   (SELECT coalesce(json_agg(json_build_array(h.kind, h.event_id, h.timestamp_ms,
                                                              h.source_event_id, h.data)
                                             ORDER BY h.event_id), '[]'::json)
                    FROM history AS h
                    WHERE h.instance_id = k.instance_id AND h.execution_id = s.execution_id)
               END,
               m.items
        FROM locked AS k
        JOIN state AS s ON s.instance_id = k.instance_id
        JOIN messages AS m ON m.instance_id = k.instance_id;
        GET DIAGNOSTICS v_returned = ROW_COUNT;
        EXIT WHEN v_returned = cardinality(v_ids);
        -- Claimed rows without a due message (left behind by a lost ack or a deletion; the
        -- ones locked above are not touched): put them back in order, or drop them.
        PERFORM duroxide_refresh_ready(v_ids, '{}', v_now);
        EXIT WHEN cardinality(v_ids) < v_want  -- the claim found all there was
               OR p_lock_timeout_ms <= 0;
        v_want := v_want - v_returned;
    END LOOP;
END
$$;

-- Commit the turns of p_acks (documents of duroxide_ack_orchestration_items), skipping those
-- whose lock is lost; one row per committed turn: its position n in p_acks, whether its
-- instance has due messages left, and the cancelled activities that existed.
-- A turn commits when its lock is live (token matches, not expired) and fenced: the execution
-- still has the history_len the fetch returned, and a new instance starts with event 1, so a
-- turn computed from a stale history never commits. The first statement verifies the locks
-- and writes what every turn writes (instance and execution rows, history, the consumed
-- messages, and the claim row: released, visible from the instance's next message, or
-- deleted); the others run only when some turn of the batch has that kind of change (each
-- statement costs its plan's start-up even when it writes nothing). The caller holds every
-- claim row involved (its first statement locks them), so the snapshots here hold every
-- message committed for those instances. A duplicate event id raises unique_violation (the
-- caller then redoes the turns one by one).
CREATE FUNCTION duroxide_apply_turns(p_acks jsonb, p_now bigint)
RETURNS TABLE (o_n integer, o_pending boolean, o_cancelled json)
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET enable_hashagg = off
SET jit = off
AS $$
DECLARE
    v_n integer[];
    v_pending boolean[];
    v_docs jsonb;
    v_cancelled json[];
BEGIN
    WITH a AS (
        SELECT x.n::integer AS n, x.doc, r.instance_id AS iid, x.doc ->> 't' AS token,
               r.dispatcher_id
        FROM jsonb_array_elements(p_acks) WITH ORDINALITY AS x(doc, n)
        JOIN instance_queue AS r ON r.instance_id = duroxide_token_instance(x.doc ->> 't')
        WHERE r.lock_token = x.doc ->> 't' AND r.locked_until > p_now
          AND r.history_len = coalesce((SELECT e.event_count FROM executions AS e
                                        WHERE e.instance_id = r.instance_id
                                          AND e.execution_id = r.execution_id), 0)
          AND (NOT x.doc ? 'instance'
               OR ((x.doc #>> '{instance,execution_id}')::bigint = r.execution_id
                   AND (r.history_len > 0 OR x.doc #>> '{events,0,e}' = '1')))),
    u AS (
        SELECT a.iid, a.dispatcher_id, a.doc, x.*
        FROM a,
             jsonb_to_record(a.doc -> 'instance') AS x(
                 name text, version text, status text, execution_status text,
                 execution_id bigint, next_execution_id bigint, output text, error text,
                 custom_status_changed boolean, custom_status text, parent_instance_id text,
                 parent_execution_id bigint, parent_event_id bigint, trace_context text)
        WHERE a.doc ? 'instance'),
    instance_rows AS (
        INSERT INTO instances AS i (
            instance_id, orchestration_name, orchestration_version, status,
            current_execution_id, output, error, custom_status, custom_status_version,
            parent_instance_id, parent_execution_id, parent_event_id, trace_context,
            last_dispatcher, created_at, updated_at, completed_at)
        SELECT
            u.iid, u.name, u.version, u.status,
            coalesce(u.next_execution_id, u.execution_id), u.output, u.error,
            CASE WHEN u.custom_status_changed THEN u.custom_status END,
            CASE WHEN u.custom_status_changed THEN 1 ELSE 0 END,
            u.parent_instance_id, u.parent_execution_id, u.parent_event_id,
            u.trace_context, u.dispatcher_id, p_now, p_now,
            CASE WHEN u.status IN ('Completed', 'Failed') THEN p_now END
        FROM u
        ON CONFLICT (instance_id) DO UPDATE SET
            orchestration_name = excluded.orchestration_name,
            orchestration_version = excluded.orchestration_version,
            status = excluded.status,
            current_execution_id = excluded.current_execution_id,
            output = excluded.output,
            error = excluded.error,
            -- excluded.custom_status_version is 1 exactly when the turn changed it
            custom_status = CASE WHEN excluded.custom_status_version = 1
                                 THEN excluded.custom_status ELSE i.custom_status END,
            custom_status_version = i.custom_status_version + excluded.custom_status_version,
            last_dispatcher = excluded.last_dispatcher,
            updated_at = excluded.updated_at,
            completed_at = excluded.completed_at),
    execution_rows AS (
        INSERT INTO executions AS e (
            instance_id, execution_id, status, output, started_at, completed_at, event_count)
        SELECT u.iid, u.execution_id, u.execution_status, u.output, p_now,
               CASE WHEN u.execution_status <> 'Running' THEN p_now END,
               coalesce(jsonb_array_length(u.doc -> 'events'), 0)
        FROM u
        ON CONFLICT (instance_id, execution_id) DO UPDATE SET
            status = excluded.status,
            output = excluded.output,
            completed_at = excluded.completed_at,
            event_count = e.event_count + excluded.event_count),
    history_rows AS (
        INSERT INTO history (
            instance_id, execution_id, event_id, kind, source_event_id, timestamp_ms, data)
        SELECT u.iid, u.execution_id, x.e, x.k, x.s, x.t, x.d
        FROM u, jsonb_to_recordset(u.doc -> 'events')
            AS x(k text, e bigint, t bigint, s bigint, d text)),
    consumed AS (
        DELETE FROM orchestrator_queue AS q
        USING a
        WHERE q.instance_id = a.iid AND q.lock_token = a.token),
    next_due AS (
        -- The statement does not see its own writes: messages left are the ones not stamped
        -- by the lock, plus those the batch's turns send to the instance.
        SELECT a.n, a.iid, a.doc,
               least((SELECT min(q.visible_at) FROM orchestrator_queue AS q
                      WHERE q.instance_id = a.iid AND q.lock_token IS DISTINCT FROM a.token),
                     (SELECT min(coalesce(x.v, p_now))
                      FROM a AS b, jsonb_to_recordset(b.doc -> 'orch') AS x(i text, v bigint)
                      WHERE x.i = a.iid)) AS at
        FROM a),
    released AS (
        UPDATE instance_queue AS r
        SET lock_token = NULL, locked_until = 0, visible_at = d.at, dispatcher_id = NULL
        FROM next_due AS d
        WHERE r.instance_id = d.iid AND d.at IS NOT NULL),
    dropped AS (
        DELETE FROM instance_queue AS r
        USING next_due AS d
        WHERE r.instance_id = d.iid AND d.at IS NULL)
    SELECT array_agg(d.n ORDER BY d.n), array_agg(coalesce(d.at <= p_now, false) ORDER BY d.n),
           jsonb_agg(d.doc ORDER BY d.n) FILTER (
               WHERE d.doc ?| '{work,orch,cancel,kv_del,kv_set}'
                  OR d.doc #> '{instance,next_execution_id}' <> 'null')
    INTO v_n, v_pending, v_docs
    FROM next_due AS d;
    IF v_docs IS NULL THEN  -- no turn has more to write (or none committed)
        RETURN QUERY SELECT u.n, u.pending, NULL::json
                     FROM unnest(v_n, v_pending) AS u (n, pending);
        RETURN;
    END IF;
    IF jsonb_path_exists(v_docs, '$[*].instance.next_execution_id ? (@ != null)') THEN
        INSERT INTO executions (instance_id, execution_id, status, started_at, event_count)
        SELECT duroxide_token_instance(d.doc ->> 't'),
               (d.doc #>> '{instance,next_execution_id}')::bigint, 'Running', p_now, 0
        FROM jsonb_array_elements(v_docs) AS d(doc)
        WHERE d.doc #> '{instance,next_execution_id}' <> 'null'
        ON CONFLICT (instance_id, execution_id) DO NOTHING;
    END IF;
    IF jsonb_path_exists(v_docs, '$[*].work') THEN
        INSERT INTO worker_queue (
            instance_id, execution_id, activity_id, payload, session_id, tag, visible_at,
            enqueued_at)
        SELECT x.i, x.e, x.a, x.p, x.s, x.g, p_now, p_now
        FROM jsonb_array_elements(v_docs) WITH ORDINALITY AS d(doc, n),
             ROWS FROM (jsonb_to_recordset(d.doc -> 'work')
                 AS (i text, e bigint, a bigint, p text, s text, g text))
             WITH ORDINALITY AS x(i, e, a, p, s, g, n)
        ORDER BY d.n, x.n;
    END IF;
    IF jsonb_path_exists(v_docs, '$[*].orch') THEN
        WITH sent AS (
            SELECT d.n, x.n AS m, x.i, x.k, x.p, coalesce(x.v, p_now) AS v
            FROM jsonb_array_elements(v_docs) WITH ORDINALITY AS d(doc, n),
                 ROWS FROM (jsonb_to_recordset(d.doc -> 'orch')
                     AS (i text, k text, p text, v bigint))
                 WITH ORDINALITY AS x(i, k, p, v, n)),
        messages AS (
            INSERT INTO orchestrator_queue (
                instance_id, kind, payload, visible_at, attempt_count, enqueued_at)
            SELECT s.i, s.k, s.p, s.v, 0, p_now
            FROM sent AS s
            ORDER BY s.n, s.m)
        -- The claim rows of the other instances messaged (locked by the caller already):
        -- created when missing (a turn committed before may have deleted it), or made
        -- visible earlier. Those of this statement's own turns were released above with
        -- these messages counted.
        INSERT INTO instance_queue AS r (instance_id, visible_at)
        SELECT s.i, min(s.v)
        FROM sent AS s
        WHERE s.i <> ALL (SELECT duroxide_token_instance(p_acks -> (n - 1) ->> 't')
                          FROM unnest(v_n) AS n)
        GROUP BY s.i
        ORDER BY s.i
        ON CONFLICT (instance_id) DO UPDATE SET visible_at = excluded.visible_at
        WHERE r.lock_token IS NULL AND excluded.visible_at < r.visible_at;
    END IF;
    IF jsonb_path_exists(v_docs, '$[*].kv_del') THEN
        DELETE FROM kv_store AS k
        USING jsonb_array_elements(v_docs) AS d(doc),
              jsonb_array_elements_text(d.doc -> 'kv_del') AS x(key)
        WHERE k.instance_id = duroxide_token_instance(d.doc ->> 't') AND k.key = x.key;
    END IF;
    IF jsonb_path_exists(v_docs, '$[*].kv_set') THEN
        INSERT INTO kv_store AS k (instance_id, key, value, updated_at)
        SELECT duroxide_token_instance(d.doc ->> 't'), x.k, x.v, x.t
        FROM jsonb_array_elements(v_docs) AS d(doc),
             jsonb_to_recordset(d.doc -> 'kv_set') AS x(k text, v text, t bigint)
        ON CONFLICT (instance_id, key) DO UPDATE SET
            value = excluded.value,
            updated_at = excluded.updated_at;
    END IF;
    IF jsonb_path_exists(v_docs, '$[*].cancel') THEN
        WITH cancelled AS (
            DELETE FROM worker_queue AS w
            USING jsonb_array_elements(v_docs) AS d(doc),
                  jsonb_to_recordset(d.doc -> 'cancel') AS c(i text, e bigint, a bigint)
            WHERE w.instance_id = c.i AND w.execution_id = c.e AND w.activity_id = c.a
            RETURNING d.doc ->> 't' AS token, w.instance_id, w.execution_id, w.activity_id)
        SELECT array_agg((SELECT json_agg(json_build_array(c.instance_id, c.execution_id,
                                                           c.activity_id))
                          FROM cancelled AS c
                          WHERE c.token = p_acks -> (n - 1) ->> 't') ORDER BY n)
        INTO v_cancelled
        FROM unnest(v_n) AS n;
    END IF;
    RETURN QUERY SELECT u.n, u.pending, v_cancelled[u.o]
                 FROM unnest(v_n, v_pending) WITH ORDINALITY AS u (n, pending, o);
END
$$;

-- The first step of committing turns (p_acks: documents of duroxide_commit_turns): lock every
-- claim row the batch touches in one statement sorted by instance id, the deadlock-free order
-- every writer of instance_queue follows: its own instances' rows, and the rows of the
-- instances its new messages go to (created when missing and made visible as early as the new
-- messages).
CREATE FUNCTION duroxide_lock_turn_rows(p_acks jsonb, p_now bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET enable_hashagg = off
SET jit = off
AS $$
BEGIN
    IF NOT jsonb_path_exists(p_acks, '$[*].orch') THEN
        PERFORM 1
        FROM instance_queue AS q
        WHERE q.instance_id = ANY (ARRAY(SELECT duroxide_token_instance(a ->> 't')
                                         FROM jsonb_array_elements(p_acks) AS a))
        ORDER BY q.instance_id
        FOR UPDATE;
    ELSE  -- the claim rows of the messages' instances too, created or advanced as needed
        INSERT INTO instance_queue AS q (instance_id, visible_at)
        SELECT t.i, min(t.v)
        FROM (SELECT duroxide_token_instance(a ->> 't') AS i, 9223372036854775807 AS v
              FROM jsonb_array_elements(p_acks) AS a
              UNION ALL
              SELECT x.i, coalesce(x.v, p_now)
              FROM jsonb_array_elements(p_acks) AS a,
                   jsonb_to_recordset(a -> 'orch') AS x(i text, v bigint)) AS t
        GROUP BY t.i
        ORDER BY t.i
        ON CONFLICT (instance_id) DO UPDATE SET visible_at = excluded.visible_at
        WHERE q.lock_token IS NULL AND excluded.visible_at < q.visible_at;
    END IF;
END
$$;

-- The last step of committing turns when some did not commit (p_ok[n] not true): their claim
-- rows were locked, and created or advanced for messages that were never sent, by
-- duroxide_lock_turn_rows: recompute them, releasing the locks that were fenced out.
CREATE FUNCTION duroxide_release_uncommitted(p_acks jsonb, p_ok boolean[], p_now bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET enable_hashagg = off
SET jit = off
AS $$
DECLARE
    v_lost text[];
    v_tokens text[];
BEGIN
    SELECT array_agg(DISTINCT t.i),
           ARRAY(SELECT p_acks -> (n - 1) ->> 't'
                 FROM generate_series(1, cardinality(p_ok)) AS n
                 WHERE p_ok[n] IS FALSE)
    INTO v_lost, v_tokens
    FROM (SELECT duroxide_token_instance(p_acks -> (n - 1) ->> 't') AS i
          FROM generate_series(1, cardinality(p_ok)) AS n
          WHERE p_ok[n] IS NOT TRUE
          UNION ALL
          SELECT x.i
          FROM generate_series(1, cardinality(p_ok)) AS n,
               jsonb_to_recordset(p_acks -> (n - 1) -> 'orch') AS x(i text)
          WHERE p_ok[n] IS NOT TRUE) AS t;
    PERFORM duroxide_refresh_ready(v_lost, v_tokens, p_now);
END
$$;

-- Commit several turns in one transaction (a group commit), all or nothing: p_acks is an array
-- of documents {t (lock token), instance {..}, events [{k,e,t,s,d}], kv_del [key],
-- kv_set [{k,v,t}], work [{i,e,a,p,s,g}], orch [{i,k,p,v}], cancel [{i,e,a}]} (each part
-- optional but t). One row per document, in order: o_ok true: committed; false: the lock was
-- lost (nothing written); o_pending: its instance has due messages left; o_cancelled: the
-- cancelled activities that existed. An error in any turn (a duplicate event id) fails the
-- whole call; duroxide_ack_orchestration_items then isolates the turns.
CREATE FUNCTION duroxide_commit_turns(p_acks jsonb)
RETURNS TABLE (
    o_ok boolean, o_error_state text, o_error text, o_now_ms bigint, o_pending boolean,
    o_cancelled json)
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET enable_hashagg = off
SET jit = off
AS $$
DECLARE
    v_now bigint := duroxide_now_ms();
    v_ok boolean[] := array_fill(false, ARRAY[jsonb_array_length(p_acks)]);
    v_pending boolean[];
    v_cancelled json[];
    r record;
BEGIN
    PERFORM duroxide_lock_turn_rows(p_acks, v_now);
    FOR r IN SELECT * FROM duroxide_apply_turns(p_acks, v_now) LOOP
        v_ok[r.o_n] := true;
        v_pending[r.o_n] := r.o_pending;
        v_cancelled[r.o_n] := r.o_cancelled;
    END LOOP;
    IF (true = ALL (v_ok)) IS NOT TRUE THEN
        PERFORM duroxide_release_uncommitted(p_acks, v_ok, v_now);
    END IF;
    RETURN QUERY
    SELECT v_ok[n], NULL::text, NULL::text, v_now, v_pending[n], v_cancelled[n]
    FROM generate_series(1, cardinality(v_ok)) AS n
    ORDER BY n;
END
$$;

-- duroxide_commit_turns, each turn all-or-nothing on its own: o_ok NULL means the turn failed
-- with o_error_state/o_error and was rolled back alone. All turns commit in one statement, in
-- one subtransaction; if it fails, they are redone one by one, each in its own. The provider
-- calls it when duroxide_commit_turns failed (a subtransaction costs a transaction id).
CREATE FUNCTION duroxide_ack_orchestration_items(p_acks jsonb)
RETURNS TABLE (
    o_ok boolean, o_error_state text, o_error text, o_now_ms bigint, o_pending boolean,
    o_cancelled json)
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET enable_hashagg = off
SET jit = off
AS $$
DECLARE
    v_now bigint := duroxide_now_ms();
    v_count integer := jsonb_array_length(p_acks);
    v_ok boolean[];
    v_pending boolean[];
    v_cancelled json[];
    v_state text[];
    v_error text[];
    v_sqlstate text;
    v_message text;
    r record;
BEGIN
    PERFORM duroxide_lock_turn_rows(p_acks, v_now);
    v_ok := array_fill(false, ARRAY[v_count]);
    BEGIN
        FOR r IN SELECT * FROM duroxide_apply_turns(p_acks, v_now) LOOP
            v_ok[r.o_n] := true;
            v_pending[r.o_n] := r.o_pending;
            v_cancelled[r.o_n] := r.o_cancelled;
        END LOOP;
    EXCEPTION WHEN OTHERS THEN
        v_ok := array_fill(false, ARRAY[v_count]);
        v_pending := '{}';
        v_cancelled := '{}';
        FOR n IN 1 .. v_count LOOP
            BEGIN
                FOR r IN SELECT * FROM duroxide_apply_turns(
                             jsonb_build_array(p_acks -> (n - 1)), v_now) LOOP
                    v_ok[n] := true;
                    v_pending[n] := r.o_pending;
                    v_cancelled[n] := r.o_cancelled;
                END LOOP;
            EXCEPTION WHEN OTHERS THEN
                GET STACKED DIAGNOSTICS v_sqlstate = RETURNED_SQLSTATE,
                                        v_message = MESSAGE_TEXT;
                v_ok[n] := NULL;
                v_state[n] := v_sqlstate;
                v_error[n] := v_message;
            END;
        END LOOP;
    END;
    IF (true = ALL (v_ok)) IS NOT TRUE THEN
        PERFORM duroxide_release_uncommitted(p_acks, v_ok, v_now);
    END IF;
    RETURN QUERY
    SELECT v_ok[n], v_state[n], v_error[n], v_now, v_pending[n], v_cancelled[n]
    FROM generate_series(1, v_count) AS n
    ORDER BY n;
END
$$;

-- ============================================================================================
-- worker queue and sessions
-- ============================================================================================

-- Peek-lock up to p_max of the oldest due activities this worker may run: untagged ones
-- (p_untagged), those with a tag in p_tags, or every tag (p_any_tag); and among them only those
-- with no session, in a session p_owner owns live, or in a session nobody owns live while
-- p_owner owns fewer than p_max_sessions live sessions (p_owner NULL leaves only session-less
-- activities). Each kind of activity is one ordered scan of its own index (one per tag) that
-- skips rows other transactions hold. Sessions are then claimed (or kept) with a fresh clock
-- on their locked rows, so an owner is judged at claim time; claiming new sessions is
-- serialized per owner (an advisory lock keyed on this schema and the owner) so concurrent
-- slots never exceed p_max_sessions. The commit is asynchronous, like the orchestrator
-- fetch's.
CREATE FUNCTION duroxide_fetch_work_items(
    p_lock_timeout_ms bigint, p_max integer, p_untagged boolean, p_tags text[],
    p_any_tag boolean, p_owner text, p_max_sessions integer, p_session_lock_ms bigint)
RETURNS TABLE (
    o_lock_token text, o_payload text, o_attempt_count integer, o_instance_id text,
    o_execution_id bigint, o_activity_id bigint, o_tag text)
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET enable_hashagg = off
SET jit = off
AS $$
DECLARE
    v_now bigint := duroxide_now_ms();
    v_tags text[] := p_tags;
    v_ids bigint[] := '{}';
    v_at bigint[] := '{}';
    v_sessions text[] := '{}';
    v_take bigint[];
    v_take_sessions text[];
    v_refused text[] := '{}';
    v_session text;
    v_clock bigint;
    v_owner text;
    v_until bigint;
    v_owned bigint;
    v_want integer := p_max;
    v_returned integer;
    v_refused_before text[] := '{}';
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    IF p_any_tag THEN
        -- every tag that has activities: a loose scan of worker_queue_tagged
        WITH RECURSIVE t (tag) AS (
            SELECT min(w.tag) FROM worker_queue AS w WHERE w.tag IS NOT NULL
            UNION ALL
            SELECT (SELECT min(w.tag) FROM worker_queue AS w WHERE w.tag > t.tag)
            FROM t
            WHERE t.tag IS NOT NULL)
        SELECT coalesce(array_agg(t.tag), '{}') INTO v_tags FROM t WHERE t.tag IS NOT NULL;
    END IF;
    -- Fewer than p_max activities only when no more is claimable by this owner: an activity of
    -- a session refused below took a place in the batch, so the places left are claimed again,
    -- until no session is refused. Each round ends: the activities it took are locked past
    -- v_now, and the sessions it refused are left out of the next rounds' scans. Rows a
    -- concurrent fetch holds are skipped, as by any SKIP LOCKED claim. (The bound on rounds is
    -- a safety net.)
    FOR v_round IN 1..1000 LOOP
        IF p_untagged THEN
            SELECT coalesce(array_agg(c.id), '{}'), coalesce(array_agg(c.visible_at), '{}'),
                   coalesce(array_agg(c.session_id), '{}')
            INTO v_ids, v_at, v_sessions
            FROM (SELECT w.id, w.visible_at, w.session_id
                  FROM worker_queue AS w
                  WHERE w.tag IS NULL AND w.visible_at <= v_now
                    AND (w.session_id IS NULL OR w.session_id <> ALL (v_refused_before))
                    AND (w.session_id IS NULL
                         OR EXISTS (SELECT 1 FROM sessions AS s
                                    WHERE s.session_id = w.session_id AND s.owner_id = p_owner
                                      AND s.locked_until > v_now)
                         OR (NOT EXISTS (SELECT 1 FROM sessions AS s
                                         WHERE s.session_id = w.session_id
                                           AND s.locked_until > v_now)
                             AND (SELECT count(*) FROM sessions AS o
                                  WHERE o.owner_id = p_owner AND o.locked_until > v_now)
                                 < p_max_sessions))
                  ORDER BY w.visible_at, w.id
                  LIMIT v_want
                  FOR UPDATE SKIP LOCKED) AS c;
        END IF;
        IF cardinality(v_tags) > 0 THEN
            SELECT v_ids || coalesce(array_agg(c.id), '{}'),
                   v_at || coalesce(array_agg(c.visible_at), '{}'),
                   v_sessions || coalesce(array_agg(c.session_id), '{}')
            INTO v_ids, v_at, v_sessions
            FROM unnest(v_tags) AS t (tag),
                 LATERAL (SELECT w.id, w.visible_at, w.session_id
                          FROM worker_queue AS w
                          WHERE w.tag = t.tag AND w.visible_at <= v_now
                            AND (w.session_id IS NULL
                                 OR w.session_id <> ALL (v_refused_before))
                            AND (w.session_id IS NULL
                                 OR EXISTS (SELECT 1 FROM sessions AS s
                                            WHERE s.session_id = w.session_id
                                              AND s.owner_id = p_owner
                                              AND s.locked_until > v_now)
                                 OR (NOT EXISTS (SELECT 1 FROM sessions AS s
                                                 WHERE s.session_id = w.session_id
                                                   AND s.locked_until > v_now)
                                     AND (SELECT count(*) FROM sessions AS o
                                          WHERE o.owner_id = p_owner
                                            AND o.locked_until > v_now) < p_max_sessions))
                          ORDER BY w.visible_at, w.id
                          LIMIT v_want
                          FOR UPDATE SKIP LOCKED) AS c;
        END IF;
        IF cardinality(v_ids) = 0 THEN
            RETURN;
        ELSIF NOT p_untagged AND cardinality(v_tags) = 1 OR cardinality(v_tags) = 0 THEN
            v_take := v_ids;  -- one scan: already the oldest v_want, in order
            v_take_sessions := v_sessions;
        ELSE  -- the oldest v_want of what the scans locked (the rest stay queued)
            SELECT array_agg(c.id ORDER BY c.at, c.id),
                   array_agg(c.session_id ORDER BY c.at, c.id)
            INTO v_take, v_take_sessions
            FROM (SELECT u.id, u.at, u.session_id
                  FROM unnest(v_ids, v_at, v_sessions) AS u (id, at, session_id)
                  ORDER BY u.at, u.id
                  LIMIT v_want) AS c;
        END IF;
        IF array_remove(v_take_sessions, NULL) <> '{}' THEN  -- session affinity
            FOR v_session IN
                SELECT DISTINCT s FROM unnest(v_take_sessions) AS s
                WHERE s IS NOT NULL
                ORDER BY s
            LOOP
                v_clock := duroxide_now_ms();
                SELECT s.owner_id, s.locked_until INTO v_owner, v_until
                FROM sessions AS s WHERE s.session_id = v_session
                FOR UPDATE;
                IF FOUND AND v_until > v_clock THEN
                    IF v_owner = p_owner THEN
                        UPDATE sessions AS s SET last_activity_at = v_clock
                        WHERE s.session_id = v_session;
                    ELSE
                        v_refused := v_refused || v_session;
                    END IF;
                    CONTINUE;
                END IF;
                IF v_owned IS NULL THEN
                    PERFORM pg_advisory_xact_lock(hashtextextended(
                        current_schema() || '/duroxide-session-owner/' || p_owner, 0));
                    SELECT count(*) INTO v_owned
                    FROM sessions AS o
                    WHERE o.owner_id = p_owner AND o.locked_until > duroxide_now_ms();
                END IF;
                IF v_owned < p_max_sessions THEN
                    INSERT INTO sessions AS s (
                        session_id, owner_id, locked_until, last_activity_at)
                    VALUES (v_session, p_owner, v_clock + p_session_lock_ms, v_clock)
                    ON CONFLICT (session_id) DO UPDATE SET
                        owner_id = excluded.owner_id,
                        locked_until = excluded.locked_until,
                        last_activity_at = excluded.last_activity_at
                    WHERE s.locked_until <= excluded.last_activity_at OR s.owner_id = p_owner;
                    IF FOUND THEN
                        v_owned := v_owned + 1;
                        CONTINUE;
                    END IF;
                END IF;
                v_refused := v_refused || v_session;
            END LOOP;
        END IF;
        RETURN QUERY
        WITH taken AS (
            UPDATE worker_queue AS w
            SET lock_token = w.id::text || '.' || gen_random_uuid()::text,
                locked_until = v_now + p_lock_timeout_ms,
                visible_at = v_now + p_lock_timeout_ms,
                attempt_count = w.attempt_count + 1
            WHERE w.id = ANY (v_take)
              AND (w.session_id IS NULL OR NOT w.session_id = ANY (v_refused))
            RETURNING w.id, w.lock_token, w.payload, w.attempt_count, w.instance_id,
                      w.execution_id, w.activity_id, w.tag)
        SELECT t.lock_token, t.payload, t.attempt_count, t.instance_id, t.execution_id,
               t.activity_id, t.tag
        FROM taken AS t
        ORDER BY array_position(v_take, t.id);
        GET DIAGNOSTICS v_returned = ROW_COUNT;
        EXIT WHEN v_refused = '{}' OR cardinality(v_take) < v_want OR p_lock_timeout_ms <= 0;
        v_want := v_want - v_returned;
        v_refused_before := v_refused_before || v_refused;
        v_ids := '{}';
        v_at := '{}';
        v_sessions := '{}';
        v_refused := '{}';
    END LOOP;
END
$$;

-- Ack several activities in one transaction: each deletes its locked activity (live lock only)
-- and enqueues its completion (k NULL: none), marking its session active. p_acks: [{t (token),
-- i (instance), k (kind), p (payload)}]. One row per ack, in order: true, or false when the
-- lock was lost (then nothing of it is written). The claim rows of the completions' instances
-- are locked first, sorted (see the header).
CREATE FUNCTION duroxide_ack_work_items(p_acks jsonb)
RETURNS TABLE (o_ok boolean)
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET enable_hashagg = off
SET jit = off
AS $$
DECLARE
    v_now bigint := duroxide_now_ms();
    v_ok boolean[];
    v_lost text[];
BEGIN
    INSERT INTO instance_queue AS r (instance_id, visible_at)
    SELECT DISTINCT x.i, v_now
    FROM jsonb_to_recordset(p_acks) AS x(i text, k text)
    WHERE x.k IS NOT NULL
    ORDER BY x.i
    ON CONFLICT (instance_id) DO UPDATE SET visible_at = excluded.visible_at
    WHERE r.lock_token IS NULL AND excluded.visible_at < r.visible_at;
    WITH a AS (
        SELECT x.n, x.t, x.i, x.k, x.p
        FROM ROWS FROM (jsonb_to_recordset(p_acks) AS (t text, i text, k text, p text))
             WITH ORDINALITY AS x(t, i, k, p, n)),
    done AS (
        DELETE FROM worker_queue AS w
        USING a
        WHERE w.id = duroxide_token_work_id(a.t) AND w.lock_token = a.t
          AND w.locked_until > v_now
        RETURNING a.n, w.session_id),
    touched AS (
        UPDATE sessions AS s SET last_activity_at = v_now
        FROM done AS d
        WHERE s.session_id = d.session_id),
    completions AS (
        INSERT INTO orchestrator_queue (
            instance_id, kind, payload, visible_at, attempt_count, enqueued_at)
        SELECT a.i, a.k, a.p, v_now, 0, v_now
        FROM a JOIN done AS d ON d.n = a.n
        WHERE a.k IS NOT NULL
        ORDER BY a.n)
    SELECT array_agg(d.n IS NOT NULL ORDER BY a.n),
           array_agg(a.i) FILTER (WHERE d.n IS NULL AND a.k IS NOT NULL)
    INTO v_ok, v_lost
    FROM a LEFT JOIN done AS d ON d.n = a.n;
    IF v_lost IS NOT NULL THEN
        PERFORM duroxide_refresh_ready(v_lost, '{}', v_now);
    END IF;
    RETURN QUERY SELECT u.ok FROM unnest(v_ok) WITH ORDINALITY AS u (ok, n) ORDER BY u.n;
END
$$;

-- ============================================================================================
-- admin functions
-- ============================================================================================

-- Instances matching every given filter (NULL: not applied) ordered by id after p_after_id.
-- p_terminal_roots keeps only finished instances without a parent (bulk deletion).
CREATE FUNCTION duroxide_list_instances(
    p_after_id text, p_instance_ids text[], p_status text, p_orchestration_name text,
    p_created_before bigint, p_created_after bigint, p_completed_before bigint,
    p_terminal_roots boolean, p_limit bigint)
RETURNS SETOF instances
LANGUAGE sql STABLE
SET search_path FROM CURRENT
AS $$
    SELECT *
    FROM instances AS i
    WHERE (p_after_id IS NULL OR i.instance_id > p_after_id)
      AND (p_instance_ids IS NULL OR i.instance_id = ANY (p_instance_ids))
      AND (p_status IS NULL OR i.status = p_status)
      AND (p_orchestration_name IS NULL OR i.orchestration_name = p_orchestration_name)
      AND (p_created_before IS NULL OR i.created_at < p_created_before)
      AND (p_created_after IS NULL OR i.created_at > p_created_after)
      AND (p_completed_before IS NULL OR i.completed_at < p_completed_before)
      AND (NOT p_terminal_roots
           OR (i.parent_instance_id IS NULL AND i.status IN ('Completed', 'Failed')))
    ORDER BY i.instance_id COLLATE "C"
    LIMIT p_limit
$$;

-- The instance and all its descendants, level by level and by id within a level; NULL when
-- the instance does not exist. Cycles (which only corrupt data could create) are cut.
CREATE FUNCTION duroxide_instance_tree(p_root text) RETURNS text[]
LANGUAGE sql STABLE
SET search_path FROM CURRENT
AS $$
    WITH RECURSIVE tree (instance_id, depth) AS (
        SELECT i.instance_id, 0 FROM instances AS i WHERE i.instance_id = p_root
        UNION ALL
        SELECT c.instance_id, t.depth + 1
        FROM instances AS c
        JOIN tree AS t ON c.parent_instance_id = t.instance_id
    ) CYCLE instance_id SET is_cycle USING path
    SELECT array_agg(n.instance_id ORDER BY n.depth, n.instance_id COLLATE "C")
    FROM (SELECT t.instance_id, min(t.depth) AS depth FROM tree AS t GROUP BY t.instance_id) AS n
$$;

-- Delete an instance and all its descendants: history, executions, queued activities
-- (returned as cancelled keys) and messages, claim rows and locks, KV. o_status: 'ok';
-- 'not_found'; without p_force 'has_parent' (o_detail: the parent) or 'running' (o_detail: a
-- running instance). The tree's claim rows are locked first (sorted, like every writer), so
-- no fetch can claim the instances meanwhile and an in-flight activity ack either commits
-- before the deletion or finds its activity gone; activities go before messages, claim rows
-- before messages, so a completion or message committed during the deletion is either deleted
-- with the rest or left with its claim row, never orphaned. An in-flight turn's ack finds its
-- lock gone (and would be fenced anyway: its execution no longer has the events it read).
CREATE FUNCTION duroxide_delete_instance(p_instance_id text, p_force boolean)
RETURNS TABLE (
    o_status text, o_detail text, o_instances bigint, o_executions bigint, o_events bigint,
    o_messages bigint, o_cancelled json)
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
AS $$
DECLARE
    v_parent text;
    v_ids text[];
    v_cancelled_count bigint;
BEGIN
    o_instances := 0;
    o_executions := 0;
    o_events := 0;
    o_messages := 0;
    SELECT i.parent_instance_id INTO v_parent FROM instances AS i
    WHERE i.instance_id = p_instance_id;
    IF NOT FOUND THEN
        o_status := 'not_found';
        RETURN NEXT;
        RETURN;
    END IF;
    v_ids := duroxide_instance_tree(p_instance_id);
    IF NOT p_force THEN
        IF v_parent IS NOT NULL
           AND EXISTS (SELECT 1 FROM instances AS i WHERE i.instance_id = v_parent) THEN
            o_status := 'has_parent';
            o_detail := v_parent;
            RETURN NEXT;
            RETURN;
        END IF;
        SELECT i.instance_id INTO o_detail
        FROM instances AS i
        WHERE i.instance_id = ANY (v_ids) AND i.status = 'Running'
        ORDER BY i.instance_id
        LIMIT 1;
        IF FOUND THEN
            o_status := 'running';
            RETURN NEXT;
            RETURN;
        END IF;
    END IF;
    PERFORM 1 FROM instance_queue AS r
    WHERE r.instance_id = ANY (v_ids)
    ORDER BY r.instance_id
    FOR UPDATE;
    WITH cancelled AS (
        DELETE FROM worker_queue AS w
        WHERE w.id IN (SELECT x.id FROM worker_queue AS x
                       WHERE x.instance_id = ANY (v_ids)
                       ORDER BY x.id
                       FOR UPDATE)
        RETURNING w.instance_id, w.execution_id, w.activity_id)
    SELECT count(*), json_agg(json_build_array(c.instance_id, c.execution_id, c.activity_id))
    INTO v_cancelled_count, o_cancelled
    FROM cancelled AS c;
    DELETE FROM instance_queue AS r WHERE r.instance_id = ANY (v_ids);
    DELETE FROM orchestrator_queue AS q WHERE q.instance_id = ANY (v_ids);
    GET DIAGNOSTICS o_messages = ROW_COUNT;
    o_messages := o_messages + v_cancelled_count;
    DELETE FROM history AS h WHERE h.instance_id = ANY (v_ids);
    GET DIAGNOSTICS o_events = ROW_COUNT;
    DELETE FROM executions AS e WHERE e.instance_id = ANY (v_ids);
    GET DIAGNOSTICS o_executions = ROW_COUNT;
    DELETE FROM kv_store AS k WHERE k.instance_id = ANY (v_ids);
    DELETE FROM instances AS i WHERE i.instance_id = ANY (v_ids);
    GET DIAGNOSTICS o_instances = ROW_COUNT;
    o_status := 'ok';
    RETURN NEXT;
END
$$;

-- Delete old executions (history and execution rows) of one instance: never the current one
-- nor a running one; p_keep_last keeps the newest that many (the current counts as one);
-- p_completed_before prunes only executions that completed before it. o_found false: no
-- such instance.
CREATE FUNCTION duroxide_prune_executions(
    p_instance_id text, p_keep_last bigint, p_completed_before bigint)
RETURNS TABLE (o_found boolean, o_executions bigint, o_events bigint)
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
AS $$
DECLARE
    v_current bigint;
    v_doomed bigint[];
BEGIN
    o_executions := 0;
    o_events := 0;
    SELECT i.current_execution_id INTO v_current FROM instances AS i
    WHERE i.instance_id = p_instance_id;
    o_found := FOUND;
    IF NOT o_found THEN
        RETURN NEXT;
        RETURN;
    END IF;
    SELECT array_agg(e.execution_id) INTO v_doomed
    FROM (SELECT x.execution_id, x.status, x.completed_at,
                 row_number() OVER (ORDER BY x.execution_id DESC) - 1 AS rank
          FROM executions AS x WHERE x.instance_id = p_instance_id) AS e
    WHERE e.execution_id <> v_current
      AND e.status <> 'Running'
      AND (p_keep_last IS NULL OR e.rank >= p_keep_last)
      AND (p_completed_before IS NULL
           OR (e.completed_at IS NOT NULL AND e.completed_at < p_completed_before));
    IF v_doomed IS NOT NULL THEN
        DELETE FROM history AS h
        WHERE h.instance_id = p_instance_id AND h.execution_id = ANY (v_doomed);
        GET DIAGNOSTICS o_events = ROW_COUNT;
        DELETE FROM executions AS e
        WHERE e.instance_id = p_instance_id AND e.execution_id = ANY (v_doomed);
        GET DIAGNOSTICS o_executions = ROW_COUNT;
    END IF;
    RETURN NEXT;
END
$$;

-- ============================================================================================
-- autoscaling
-- ============================================================================================

-- Backlog for KEDA's postgresql scaler: ready plus in-flight items of one queue.
-- queue 'orchestrator': due or locked messages (tag ignored). queue 'worker': due or locked
-- activities with the given tag (NULL: untagged, '*': every tag). It pins its own search_path
-- (the schema, then pg_temp), so it can be called schema-qualified from any connection, and
-- runs with its owner's rights, so the scaler's role needs only USAGE on the schema (and
-- EXECUTE, granted to PUBLIC by default), no access to the tables:
--     SELECT duroxide.duroxide_backlog('worker', 'gpu');
CREATE FUNCTION duroxide_backlog(queue text, tag text DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path FROM CURRENT
SET jit = off
AS $$
DECLARE
    v_now bigint := duroxide_now_ms();
BEGIN
    IF duroxide_backlog.queue = 'orchestrator' THEN
        RETURN (SELECT count(*) FROM orchestrator_queue AS q
                WHERE q.visible_at <= v_now OR q.lock_token IS NOT NULL);
    ELSIF duroxide_backlog.queue = 'worker' THEN
        RETURN (SELECT count(*) FROM worker_queue AS w
                WHERE (w.visible_at <= v_now OR w.locked_until > v_now)
                  AND (duroxide_backlog.tag = '*'
                       OR (duroxide_backlog.tag IS NULL AND w.tag IS NULL)
                       OR w.tag = duroxide_backlog.tag));
    END IF;
    RAISE EXCEPTION 'unknown duroxide queue %: use ''orchestrator'' or ''worker''',
        duroxide_backlog.queue USING ERRCODE = 'invalid_parameter_value';
END
$$;
