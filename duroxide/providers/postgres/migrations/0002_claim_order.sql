-- Migration 2: admission order and fewer transaction ids per turn.
-- * A client's start is claimed behind the work of running instances that became claimable
--   less than duroxide_start_bias_ms() after it, so a burst of starts no longer delays the
--   timers and completions of instances already in flight: instance_queue.start_bias and the
--   claim index over visible_at + start_bias (replacing instance_queue_visible).
-- * duroxide_commit_turns commits a batch of turns without a subtransaction (the provider falls
--   back to duroxide_ack_orchestration_items, which isolates each turn, when it fails), and
--   duroxide_fetch_orchestration_items no longer catches lock_not_available (the provider
--   skips that batch): the common fetch and ack each take one transaction id instead of two.
-- Runs with search_path set to the tenant's schema. Older code keeps working on this schema
-- during a rolling deploy: its enqueue leaves start_bias at 0, the replaced functions keep
-- their signatures and results, and a fetch that fails on a lock timeout is retried.

CREATE FUNCTION duroxide_start_bias_ms() RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT 1000::bigint $$;

ALTER TABLE instance_queue ADD COLUMN start_bias bigint NOT NULL DEFAULT 0;
DROP INDEX instance_queue_visible;
-- Claim order: visible_at + start_bias, where start_bias is duroxide_start_bias_ms() while the
-- instance waits for the first turn a client's start asked for, else 0 (see
-- duroxide_start_bias_ms). visible_at is the second column so that the visibility filter is
-- checked in the index.
CREATE INDEX instance_queue_claim ON instance_queue ((visible_at + start_bias), visible_at);

CREATE OR REPLACE FUNCTION duroxide_fetch_orchestration_items(
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
BEGIN
    -- Asynchronous commit (see above); never wait long for a lock (see below).
    PERFORM set_config('synchronous_commit', 'off', true), set_config('lock_timeout', '100', true);
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
          LIMIT p_max
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
    IF v_returned < cardinality(v_ids) THEN
        -- Claimed rows without a due message (left behind by a lost ack or a deletion; the
        -- ones locked above are not touched): put them back in order, or drop them.
        PERFORM duroxide_refresh_ready(v_ids, '{}', v_now);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION duroxide_apply_turns(p_acks jsonb, p_now bigint)
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
        SET lock_token = NULL, locked_until = 0, visible_at = d.at, dispatcher_id = NULL,
            start_bias = 0
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

CREATE OR REPLACE FUNCTION duroxide_ack_orchestration_items(p_acks jsonb)
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
