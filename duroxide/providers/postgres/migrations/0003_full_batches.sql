-- Migration 3: a batch fetch returns fewer items than asked for only when no more is claimable,
-- so a claim loop that got fewer can wait for a notification instead of asking again at once.
-- * duroxide_fetch_orchestration_items claims again for the places taken by claim rows without
--   a due message (left behind by a lost ack or a deletion), which it puts back in order.
-- * duroxide_fetch_work_items claims again for the places taken by activities of sessions it
--   refused (owned by another worker, or past p_max_sessions).
-- Runs with search_path set to the tenant's schema.
-- Older code keeps working on this schema during a rolling deploy: the replaced functions keep
-- their signatures and results (a fetch just returns more of what was claimable).

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

CREATE OR REPLACE FUNCTION duroxide_fetch_work_items(
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
