-- Every statement the PostgreSQL provider sends, by name. Each is one round trip: a single
-- statement or one call of a function from schema.sql. Values are always bound parameters;
-- every name is qualified with {schema}, which the provider replaces once, at load, with the
-- quoted tenant schema (psycopg.sql.Identifier) — no statement depends on a session's
-- search_path. (Literal braces are doubled.)

-- name: local_statement_timeout
-- The statement timeout of the current transaction only (never the session's).
SELECT pg_catalog.set_config('statement_timeout', %s, true)

-- ============================================================================================
-- orchestrator queue
-- ============================================================================================

-- name: now_ms
SELECT {schema}.duroxide_now_ms()

-- name: enqueue_orchestrator
-- Queue the message and make its instance claimable from its visible time: create the claim
-- row, or advance an unlocked one (a locked or parked instance gets it at its next turn). A
-- start takes its place in the claim order behind running instances (duroxide_start_bias_ms).
-- The row's place is that of its earliest message: visible from the earliest visible time,
-- ordered by the earliest visible time plus bias (each message's own: a start's bias does not
-- hold back an event queued with it), so 0 <= start_bias <= the bias still holds.
WITH message AS (
    INSERT INTO {schema}.orchestrator_queue (
        instance_id, kind, payload, visible_at, attempt_count, enqueued_at)
    SELECT %(instance_id)s, %(kind)s, %(payload)s, n.now + %(delay_ms)s, 0, n.now
    FROM (SELECT {schema}.duroxide_now_ms() AS now) AS n
    RETURNING instance_id, kind, visible_at)
INSERT INTO {schema}.instance_queue AS r (instance_id, visible_at, start_bias)
SELECT m.instance_id, m.visible_at,
       CASE WHEN m.kind = 'StartOrchestration' THEN {schema}.duroxide_start_bias_ms() ELSE 0 END
FROM message AS m
ON CONFLICT (instance_id) DO UPDATE SET
    visible_at = least(r.visible_at, excluded.visible_at),
    start_bias = least(r.visible_at + r.start_bias, excluded.visible_at + excluded.start_bias)
                 - least(r.visible_at, excluded.visible_at)
WHERE r.lock_token IS NULL
  AND (excluded.visible_at < r.visible_at
       OR excluded.visible_at + excluded.start_bias < r.visible_at + r.start_bias)

-- name: fetch_orchestration_items
SELECT * FROM {schema}.duroxide_fetch_orchestration_items(%s, %s, %s)

-- name: read_history
SELECT kind, event_id, timestamp_ms, source_event_id, data
FROM {schema}.history
WHERE instance_id = %s AND execution_id = %s AND event_id > %s
ORDER BY event_id

-- name: commit_turns
SELECT * FROM {schema}.duroxide_commit_turns(%s::jsonb)

-- name: ack_orchestration_items
-- What commit_turns does, each turn in its own subtransaction (after commit_turns failed).
SELECT * FROM {schema}.duroxide_ack_orchestration_items(%s::jsonb)

-- name: abandon_orchestration_item
-- Release the lock (live or expired) and return its stamped messages to the queue (undoing the
-- fetch's attempt count on request); the instance is claimable again from its earliest
-- message. With a delay the instance is parked instead: the lock stays live under a token
-- nobody holds until the delay ends, so messages arriving meanwhile wait with the parked ones
-- rather than being fetched without them. 0: unknown token.
WITH n AS (SELECT {schema}.duroxide_now_ms() AS now),
held AS (
    SELECT r.instance_id
    FROM {schema}.instance_queue AS r
    WHERE r.instance_id = {schema}.duroxide_token_instance(%(token)s)
      AND r.lock_token = %(token)s
    FOR UPDATE),
returned AS (
    UPDATE {schema}.orchestrator_queue AS q
    SET lock_token = NULL,
        attempt_count = CASE WHEN %(ignore_attempt)s THEN greatest(q.attempt_count - 1, 0)
                             ELSE q.attempt_count END
    FROM held AS h
    WHERE q.instance_id = h.instance_id AND q.lock_token = %(token)s),
freed AS (
    UPDATE {schema}.instance_queue AS r
    SET lock_token = CASE WHEN %(delay_ms)s > 0
                          THEN 'parked-' || pg_catalog.gen_random_uuid()::text END,
        locked_until = CASE WHEN %(delay_ms)s > 0 THEN n.now + %(delay_ms)s ELSE 0 END,
        visible_at = CASE
            WHEN %(delay_ms)s > 0 THEN n.now + %(delay_ms)s
            -- the stamped messages are due, so this is at most now
            ELSE coalesce((SELECT min(q.visible_at) FROM {schema}.orchestrator_queue AS q
                           WHERE q.instance_id = r.instance_id), n.now) END,
        dispatcher_id = NULL
    FROM held AS h, n
    WHERE r.instance_id = h.instance_id
    RETURNING r.instance_id)
SELECT count(*) FROM freed

-- name: renew_orchestration_item_lock
-- Extend a live lock (token matches, not expired); no row changed: the lock was lost.
UPDATE {schema}.instance_queue AS r
SET locked_until = n.now + %(lock_ms)s, visible_at = n.now + %(lock_ms)s
FROM (SELECT {schema}.duroxide_now_ms() AS now) AS n
WHERE r.instance_id = {schema}.duroxide_token_instance(%(token)s)
  AND r.lock_token = %(token)s
  AND r.locked_until > n.now

-- ============================================================================================
-- worker queue and sessions
-- ============================================================================================

-- name: fetch_work_items
SELECT * FROM {schema}.duroxide_fetch_work_items(%s, %s, %s, %s, %s, %s, %s, %s)

-- name: ack_work_items
SELECT * FROM {schema}.duroxide_ack_work_items(%s::jsonb)

-- name: abandon_work_item
-- Unlock the activity: claimable again at its original place in the queue, or after the delay.
UPDATE {schema}.worker_queue AS w
SET lock_token = NULL,
    locked_until = 0,
    visible_at = CASE WHEN %(delay_ms)s > 0 THEN {schema}.duroxide_now_ms() + %(delay_ms)s
                      ELSE w.enqueued_at END,
    attempt_count = CASE WHEN %(ignore_attempt)s THEN greatest(w.attempt_count - 1, 0)
                         ELSE w.attempt_count END
WHERE w.id = {schema}.duroxide_token_work_id(%(token)s) AND w.lock_token = %(token)s

-- name: renew_work_item_lock
-- Extend a live activity lock and mark its session active. Returns 0 when the lock was lost.
WITH n AS (SELECT {schema}.duroxide_now_ms() AS now),
renewed AS (
    UPDATE {schema}.worker_queue AS w
    SET locked_until = n.now + %(lock_ms)s, visible_at = n.now + %(lock_ms)s
    FROM n
    WHERE w.id = {schema}.duroxide_token_work_id(%(token)s)
      AND w.lock_token = %(token)s
      AND w.locked_until > n.now
    RETURNING w.session_id, n.now),
touched AS (
    UPDATE {schema}.sessions AS s SET last_activity_at = r.now
    FROM renewed AS r
    WHERE s.session_id = r.session_id)
SELECT count(*) FROM renewed

-- name: renew_session_locks
-- Extend the owners' live sessions that are busy — one of their activities is running (a
-- live-locked work item) or they saw work within idle_ms — and release the idle ones.
-- Returns how many were renewed.
WITH n AS (SELECT {schema}.duroxide_now_ms() AS now),
changed AS (
    UPDATE {schema}.sessions AS s
    SET locked_until = CASE
            WHEN s.last_activity_at > n.now - %(idle_ms)s
                 OR EXISTS (SELECT 1 FROM {schema}.worker_queue AS w
                            WHERE w.session_id = s.session_id AND w.locked_until > n.now)
            THEN n.now + %(lock_ms)s ELSE 0 END
    FROM n
    WHERE s.owner_id = ANY (%(owners)s::text[]) AND s.locked_until > n.now
    RETURNING s.locked_until > 0 AS renewed)
SELECT count(*) FILTER (WHERE renewed) FROM changed

-- name: cleanup_orphaned_sessions
DELETE FROM {schema}.sessions AS s
WHERE s.locked_until <= {schema}.duroxide_now_ms()
  AND NOT EXISTS (SELECT 1 FROM {schema}.worker_queue AS w WHERE w.session_id = s.session_id)

-- ============================================================================================
-- client reads
-- ============================================================================================

-- name: instance_status
SELECT orchestration_name, orchestration_version, status, current_execution_id, output, error,
       custom_status, custom_status_version
FROM {schema}.instances
WHERE instance_id = %s

-- name: kv_value
SELECT value FROM {schema}.kv_store WHERE instance_id = %s AND key = %s

-- name: kv_all_values
SELECT key, value FROM {schema}.kv_store WHERE instance_id = %s

-- ============================================================================================
-- admin
-- ============================================================================================

-- name: list_instances
SELECT instance_id, orchestration_name, orchestration_version, status, current_execution_id,
       created_at, updated_at, parent_instance_id, output, error::json ->> 'message',
       custom_status, custom_status_version
FROM {schema}.duroxide_list_instances(
    %(after_id)s, %(instance_ids)s, %(status)s, %(orchestration_name)s, %(created_before)s,
    %(created_after)s, %(completed_before)s, %(terminal_roots)s, %(limit)s)

-- name: instance_info
SELECT instance_id, orchestration_name, orchestration_version, status, current_execution_id,
       created_at, updated_at, parent_instance_id, output, error::json ->> 'message',
       custom_status, custom_status_version
FROM {schema}.instances
WHERE instance_id = %s

-- name: execution_info
SELECT execution_id, status, event_count, started_at, completed_at, output
FROM {schema}.executions
WHERE instance_id = %s AND execution_id = %s

-- name: list_executions
SELECT execution_id FROM {schema}.executions WHERE instance_id = %s ORDER BY execution_id

-- name: instance_tree
SELECT {schema}.duroxide_instance_tree(%s)

-- name: delete_instance
SELECT * FROM {schema}.duroxide_delete_instance(%s, %s)

-- name: prune_executions
SELECT * FROM {schema}.duroxide_prune_executions(%s, %s, %s)

-- name: orchestration_stats
SELECT
    (SELECT count(*) FROM {schema}.history AS h
     WHERE h.instance_id = i.instance_id AND h.execution_id = i.current_execution_id),
    (SELECT coalesce(sum(octet_length(h.data)), 0) FROM {schema}.history AS h
     WHERE h.instance_id = i.instance_id AND h.execution_id = i.current_execution_id),
    (SELECT count(*) FROM {schema}.orchestrator_queue AS q WHERE q.instance_id = i.instance_id),
    (SELECT count(*) FROM {schema}.kv_store AS k WHERE k.instance_id = i.instance_id),
    (SELECT coalesce(sum(octet_length(k.value)), 0) FROM {schema}.kv_store AS k
     WHERE k.instance_id = i.instance_id)
FROM {schema}.instances AS i
WHERE i.instance_id = %s

-- name: system_metrics
SELECT count(*),
       (SELECT count(*) FROM {schema}.executions),
       count(*) FILTER (WHERE status = 'Running'),
       count(*) FILTER (WHERE status = 'Completed'),
       count(*) FILTER (WHERE status = 'Failed'),
       (SELECT count(*) FROM {schema}.history)
FROM {schema}.instances

-- name: queue_depths
-- Due or in-flight orchestrator messages, the ones that become visible later (timers,
-- back-off), and worker items per tag ('' for untagged) as a JSON object.
SELECT
    (SELECT count(*) FROM {schema}.orchestrator_queue AS q
     WHERE q.visible_at <= n.now OR q.lock_token IS NOT NULL),
    (SELECT count(*) FROM {schema}.orchestrator_queue AS q
     WHERE q.visible_at > n.now AND q.lock_token IS NULL),
    (SELECT coalesce(json_object_agg(t.tag, t.items), '{{}}'::json)
     FROM (SELECT coalesce(w.tag, '') AS tag, count(*) AS items
           FROM {schema}.worker_queue AS w GROUP BY coalesce(w.tag, '')) AS t)
FROM (SELECT {schema}.duroxide_now_ms() AS now) AS n
