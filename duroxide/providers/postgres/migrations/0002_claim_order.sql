-- Migration 2: admission order and fewer transaction ids per turn.
-- * A client's start is claimed behind the work of running instances that became claimable
--   less than duroxide_start_bias_ms() after it, so a burst of starts no longer delays the
--   timers and completions of instances already in flight: instance_queue.start_bias (reset
--   when the instance is first claimed) and the claim index over visible_at + start_bias
--   (replacing instance_queue_visible).
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
-- Claim order: visible_at + start_bias, where start_bias is duroxide_start_bias_ms() from a
-- client's start until the instance is first claimed, else 0 (see duroxide_start_bias_ms).
-- visible_at is the second column so that the visibility filter is checked in the index.
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
    IF v_returned < cardinality(v_ids) THEN
        -- Claimed rows without a due message (left behind by a lost ack or a deletion; the
        -- ones locked above are not touched): put them back in order, or drop them.
        PERFORM duroxide_refresh_ready(v_ids, '{}', v_now);
    END IF;
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
