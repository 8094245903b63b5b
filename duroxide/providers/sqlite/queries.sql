-- Every statement of the SQLite provider, by name. Values are always bound parameters; lists
-- of values are bound as one JSON array and expanded with json_each(), so no SQL is composed.

-- ============================================================================================
-- connection setup and transaction control
-- ============================================================================================

-- name: connection_pragmas
-- Wait up to 10 s for another connection (thread or process) to release the write lock
-- instead of failing at once with "database is locked".
PRAGMA busy_timeout = 10000;
-- The schema declares history -> executions -> instances references; enforce them so a bug
-- can never leave history without its execution row. (SQLite leaves them off by default.)
PRAGMA foreign_keys = ON;
-- In WAL mode NORMAL is durable against application crashes and never corrupts the database;
-- only an OS crash or power loss may undo the last commits. FULL would fsync on every commit.
PRAGMA synchronous = NORMAL;

-- name: file_pragmas
-- Write-ahead log: readers never block the writer and the writer never blocks readers, so
-- several processes can share one file. (In-memory databases cannot use it.)
PRAGMA journal_mode = WAL;

-- name: needs_start_bias
-- A database file created before orchestrator_queue had start_bias (then add_start_bias runs
-- before the schema, whose index needs the column).
SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'orchestrator_queue'
  AND NOT EXISTS (SELECT 1 FROM pragma_table_info('orchestrator_queue')
                  WHERE name = 'start_bias')

-- name: add_start_bias
ALTER TABLE orchestrator_queue ADD COLUMN start_bias INTEGER NOT NULL DEFAULT 0;
DROP INDEX IF EXISTS orchestrator_queue_visible;

-- name: begin_write
BEGIN IMMEDIATE

-- name: begin_read
BEGIN

-- name: commit
COMMIT

-- name: savepoint
SAVEPOINT item

-- name: release_savepoint
RELEASE SAVEPOINT item

-- name: rollback_to_savepoint
ROLLBACK TO SAVEPOINT item

-- name: rollback
ROLLBACK

-- ============================================================================================
-- orchestrator queue
-- ============================================================================================

-- name: enqueue_orchestrator
INSERT INTO orchestrator_queue (
    instance_id, kind, payload, visible_at, attempt_count, enqueued_at, start_bias)
VALUES (?, ?, ?, ?, 0, ?, ?)

-- name: lock_next_instance
-- Lock the instance owning the oldest visible message that has no live lock (an expired lock
-- row is taken over). Returns the locked instance id, or no row. Sticky turns: an instance
-- whose last turn another dispatcher acked is left to it (it has the history in memory) while
-- the message is less than 50 ms old; a caller without a dispatcher id is never held back.
-- Claim order: a client's start counts :bias ms younger (start_bias, see the schema).
INSERT INTO instance_locks (instance_id, lock_token, locked_until, dispatcher_id)
SELECT q.instance_id, :token, :locked_until, :dispatcher_id
FROM orchestrator_queue AS q
WHERE q.visible_at + q.start_bias <= :now + :bias
  AND q.visible_at <= :now
  AND NOT EXISTS (
      SELECT 1 FROM instance_locks AS l
      WHERE l.instance_id = q.instance_id AND l.locked_until > :now)
  AND (:dispatcher_id IS NULL
       OR q.visible_at <= :now - 50
       OR NOT EXISTS (
           SELECT 1 FROM instances AS i
           WHERE i.instance_id = q.instance_id AND i.last_dispatcher <> :dispatcher_id))
ORDER BY q.visible_at + q.start_bias, q.visible_at, q.id
LIMIT 1
ON CONFLICT (instance_id) DO UPDATE SET
    lock_token = excluded.lock_token,
    locked_until = excluded.locked_until,
    dispatcher_id = excluded.dispatcher_id
RETURNING instance_id

-- name: stamp_messages
-- Hand every visible message of the locked instance to this lock (also those stamped by an
-- expired earlier lock) and count the attempt. A claimed start is admitted: its bias is gone.
UPDATE orchestrator_queue
SET lock_token = :token, attempt_count = attempt_count + 1, start_bias = 0
WHERE instance_id = :instance_id AND visible_at <= :now
RETURNING visible_at, id, kind, payload, attempt_count

-- name: instance_state
SELECT i.orchestration_name, i.orchestration_version, i.status, i.current_execution_id,
       i.custom_status, i.custom_status_version, i.last_dispatcher,
       COALESCE(e.event_count, 0)
FROM instances AS i
LEFT JOIN executions AS e
  ON e.instance_id = i.instance_id AND e.execution_id = i.current_execution_id
WHERE i.instance_id = ?

-- name: read_history
SELECT kind, event_id, timestamp_ms, source_event_id, data
FROM history
WHERE instance_id = ? AND execution_id = ? AND event_id > ?
ORDER BY event_id

-- name: take_live_lock
-- Removes the lock if it is still live; no row means the lock was lost.
DELETE FROM instance_locks
WHERE lock_token = ? AND locked_until > ?
RETURNING instance_id, dispatcher_id

-- name: release_lock
DELETE FROM instance_locks
WHERE lock_token = ?
RETURNING instance_id

-- name: upsert_instance
INSERT INTO instances (
    instance_id, orchestration_name, orchestration_version, status, current_execution_id,
    output, error, custom_status, custom_status_version, parent_instance_id,
    parent_execution_id, parent_event_id, trace_context, last_dispatcher, created_at, updated_at,
    completed_at)
VALUES (
    :instance_id, :name, :version, :status, :current_execution_id,
    :output, :error, CASE WHEN :custom_status_changed THEN :custom_status END,
    :custom_status_changed, :parent_instance_id,
    :parent_execution_id, :parent_event_id, :trace_context, :dispatcher_id, :now, :now,
    :completed_at)
ON CONFLICT (instance_id) DO UPDATE SET
    orchestration_name = excluded.orchestration_name,
    orchestration_version = excluded.orchestration_version,
    status = excluded.status,
    current_execution_id = excluded.current_execution_id,
    output = excluded.output,
    error = excluded.error,
    custom_status = CASE WHEN :custom_status_changed THEN excluded.custom_status
                         ELSE custom_status END,
    custom_status_version = custom_status_version + excluded.custom_status_version,
    last_dispatcher = excluded.last_dispatcher,
    updated_at = excluded.updated_at,
    completed_at = excluded.completed_at

-- name: upsert_execution
INSERT INTO executions (
    instance_id, execution_id, status, output, started_at, completed_at, event_count)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (instance_id, execution_id) DO UPDATE SET
    status = excluded.status,
    output = excluded.output,
    completed_at = excluded.completed_at,
    event_count = event_count + excluded.event_count

-- name: insert_next_execution
INSERT INTO executions (instance_id, execution_id, status, started_at, event_count)
VALUES (?, ?, 'Running', ?, 0)
ON CONFLICT (instance_id, execution_id) DO NOTHING

-- name: insert_event
INSERT INTO history (
    instance_id, execution_id, kind, event_id, timestamp_ms, source_event_id, data)
VALUES (?, ?, ?, ?, ?, ?, ?)

-- name: upsert_kv
INSERT INTO kv_store (instance_id, key, value, updated_at)
VALUES (?, ?, ?, ?)
ON CONFLICT (instance_id, key) DO UPDATE SET
    value = excluded.value,
    updated_at = excluded.updated_at

-- name: delete_kv
DELETE FROM kv_store WHERE instance_id = ? AND key = ?

-- name: insert_work_item
INSERT INTO worker_queue (
    instance_id, execution_id, activity_id, payload, session_id, tag, visible_at)
VALUES (?, ?, ?, ?, ?, ?, ?)

-- name: cancel_work_item
DELETE FROM worker_queue WHERE instance_id = ? AND execution_id = ? AND activity_id = ?

-- name: delete_stamped_messages
DELETE FROM orchestrator_queue WHERE instance_id = ? AND lock_token = ?

-- name: has_visible_messages
SELECT EXISTS (
    SELECT 1 FROM orchestrator_queue WHERE instance_id = ? AND visible_at <= ?)

-- name: unstamp_messages
UPDATE orchestrator_queue
SET lock_token = NULL, attempt_count = max(attempt_count - :uncount, 0)
WHERE instance_id = :instance_id AND lock_token = :token

-- name: park_lock
-- Abandon with a delay parks the whole instance: the lock stays live (under a token nobody
-- holds) until the delay ends, so messages arriving meanwhile wait with the parked ones instead
-- of being fetched, and dropped, without them.
UPDATE instance_locks SET lock_token = :parked, locked_until = :now + :delay_ms
WHERE lock_token = :token
RETURNING instance_id

-- name: renew_instance_lock
UPDATE instance_locks SET locked_until = ? WHERE lock_token = ? AND locked_until > ?

-- ============================================================================================
-- worker queue and sessions
-- ============================================================================================

-- name: fetch_work_item
-- Lock the oldest visible, unlocked (or expired) activity that passes the tag filter and that
-- this worker may run: no session; a session it owns live; or a session nobody owns live while
-- it owns fewer than max_sessions live sessions. Without a session config :owner is NULL and
-- :max_sessions 0, which leaves only session-less activities.
UPDATE worker_queue
SET lock_token = :token, locked_until = :locked_until, attempt_count = attempt_count + 1
WHERE id = (
    SELECT w.id
    FROM worker_queue AS w
    LEFT JOIN sessions AS s ON s.session_id = w.session_id
    WHERE w.visible_at <= :now
      AND w.locked_until <= :now
      AND (:any_tag
           OR (w.tag IS NULL AND :untagged)
           OR w.tag IN (SELECT value FROM json_each(:tags)))
      AND (w.session_id IS NULL
           OR (s.owner_id = :owner AND s.locked_until > :now)
           OR ((s.session_id IS NULL OR s.locked_until <= :now)
               AND (SELECT count(*) FROM sessions
                    WHERE owner_id = :owner AND locked_until > :now) < :max_sessions))
    ORDER BY w.visible_at, w.id
    LIMIT 1)
RETURNING session_id, payload, attempt_count, instance_id, execution_id, activity_id, tag

-- name: claim_session
-- Claim (or keep) a session for this owner; a session it already owns live keeps its expiry.
INSERT INTO sessions (session_id, owner_id, locked_until, last_activity_at)
VALUES (:session_id, :owner, :locked_until, :now)
ON CONFLICT (session_id) DO UPDATE SET
    locked_until = CASE WHEN owner_id = excluded.owner_id AND locked_until > :now
                        THEN locked_until ELSE excluded.locked_until END,
    owner_id = excluded.owner_id,
    last_activity_at = excluded.last_activity_at

-- name: touch_session
UPDATE sessions SET last_activity_at = ? WHERE session_id = ?

-- name: ack_work_item
DELETE FROM worker_queue
WHERE lock_token = ? AND locked_until > ?
RETURNING session_id

-- name: abandon_work_item
UPDATE worker_queue
SET lock_token = NULL,
    locked_until = 0,
    visible_at = CASE WHEN :delay_ms > 0 THEN :now + :delay_ms ELSE visible_at END,
    attempt_count = max(attempt_count - :uncount, 0)
WHERE lock_token = :token

-- name: renew_work_item_lock
UPDATE worker_queue
SET locked_until = ?
WHERE lock_token = ? AND locked_until > ?
RETURNING session_id

-- name: renew_sessions
-- A session is busy while one of its activities is running (a live-locked work item) or it saw
-- work within the idle timeout; busy sessions keep their owner.
UPDATE sessions
SET locked_until = :locked_until
WHERE owner_id IN (SELECT value FROM json_each(:owners))
  AND locked_until > :now
  AND (last_activity_at > :idle_before
       OR EXISTS (SELECT 1 FROM worker_queue AS w
                  WHERE w.session_id = sessions.session_id AND w.locked_until > :now))

-- name: release_idle_sessions
UPDATE sessions
SET locked_until = 0
WHERE owner_id IN (SELECT value FROM json_each(:owners))
  AND locked_until > :now
  AND last_activity_at <= :idle_before
  AND NOT EXISTS (SELECT 1 FROM worker_queue AS w
                  WHERE w.session_id = sessions.session_id AND w.locked_until > :now)

-- name: cleanup_orphaned_sessions
DELETE FROM sessions
WHERE locked_until <= ?
  AND NOT EXISTS (SELECT 1 FROM worker_queue AS w WHERE w.session_id = sessions.session_id)

-- ============================================================================================
-- client reads
-- ============================================================================================

-- name: instance_status
SELECT orchestration_name, orchestration_version, status, current_execution_id, output, error,
       custom_status, custom_status_version
FROM instances
WHERE instance_id = ?

-- name: kv_value
SELECT value FROM kv_store WHERE instance_id = ? AND key = ?

-- name: kv_all_values
SELECT key, value FROM kv_store WHERE instance_id = ?

-- ============================================================================================
-- admin
-- ============================================================================================

-- name: list_instances
-- Every filter is optional (NULL: not applied). :instance_ids is a JSON array.
-- :terminal_roots selects only finished instances without a parent (bulk deletion).
SELECT instance_id, orchestration_name, orchestration_version, status, current_execution_id,
       created_at, updated_at, parent_instance_id, output, json_extract(error, '$.message'),
       custom_status, custom_status_version
FROM instances
WHERE (:after_id IS NULL OR instance_id > :after_id)
  AND (:instance_ids IS NULL OR instance_id IN (SELECT value FROM json_each(:instance_ids)))
  AND (:status IS NULL OR status = :status)
  AND (:orchestration_name IS NULL OR orchestration_name = :orchestration_name)
  AND (:created_before IS NULL OR created_at < :created_before)
  AND (:created_after IS NULL OR created_at > :created_after)
  AND (:completed_before IS NULL OR completed_at < :completed_before)
  AND (NOT :terminal_roots
       OR (parent_instance_id IS NULL AND status IN ('Completed', 'Failed')))
ORDER BY instance_id
LIMIT :limit

-- name: instance_info
SELECT instance_id, orchestration_name, orchestration_version, status, current_execution_id,
       created_at, updated_at, parent_instance_id, output, json_extract(error, '$.message'),
       custom_status, custom_status_version
FROM instances
WHERE instance_id = ?

-- name: execution_info
SELECT execution_id, status, event_count, started_at, completed_at, output
FROM executions
WHERE instance_id = ? AND execution_id = ?

-- name: list_executions
SELECT execution_id FROM executions WHERE instance_id = ? ORDER BY execution_id

-- name: instance_exists
SELECT EXISTS (SELECT 1 FROM instances WHERE instance_id = ?)

-- name: instance_parent
SELECT parent_instance_id FROM instances WHERE instance_id = ?

-- name: children_of
SELECT instance_id
FROM instances
WHERE parent_instance_id IN (SELECT value FROM json_each(?))
ORDER BY instance_id

-- name: first_running_of
SELECT instance_id
FROM instances
WHERE instance_id IN (SELECT value FROM json_each(?)) AND status = 'Running'
ORDER BY instance_id
LIMIT 1

-- name: delete_history_of
DELETE FROM history WHERE instance_id IN (SELECT value FROM json_each(?))

-- name: delete_executions_of
DELETE FROM executions WHERE instance_id IN (SELECT value FROM json_each(?))

-- name: delete_orchestrator_queue_of
DELETE FROM orchestrator_queue WHERE instance_id IN (SELECT value FROM json_each(?))

-- name: delete_worker_queue_of
DELETE FROM worker_queue
WHERE instance_id IN (SELECT value FROM json_each(?))
RETURNING instance_id, execution_id, activity_id

-- name: delete_locks_of
DELETE FROM instance_locks WHERE instance_id IN (SELECT value FROM json_each(?))

-- name: delete_kv_of
DELETE FROM kv_store WHERE instance_id IN (SELECT value FROM json_each(?))

-- name: delete_instances_of
DELETE FROM instances WHERE instance_id IN (SELECT value FROM json_each(?))

-- name: current_execution
SELECT current_execution_id FROM instances WHERE instance_id = ?

-- name: executions_newest_first
SELECT execution_id, status, completed_at
FROM executions
WHERE instance_id = ?
ORDER BY execution_id DESC

-- name: delete_execution_history
DELETE FROM history WHERE instance_id = ? AND execution_id = ?

-- name: delete_execution
DELETE FROM executions WHERE instance_id = ? AND execution_id = ?

-- name: orchestration_stats
SELECT
    (SELECT count(*) FROM history AS h
     WHERE h.instance_id = i.instance_id AND h.execution_id = i.current_execution_id),
    (SELECT coalesce(sum(length(CAST(h.data AS BLOB))), 0) FROM history AS h
     WHERE h.instance_id = i.instance_id AND h.execution_id = i.current_execution_id),
    (SELECT count(*) FROM orchestrator_queue AS q WHERE q.instance_id = i.instance_id),
    (SELECT count(*) FROM kv_store AS k WHERE k.instance_id = i.instance_id),
    (SELECT coalesce(sum(length(CAST(k.value AS BLOB))), 0) FROM kv_store AS k
     WHERE k.instance_id = i.instance_id)
FROM instances AS i
WHERE i.instance_id = ?

-- name: system_metrics
SELECT count(*),
       (SELECT count(*) FROM executions),
       coalesce(sum(status = 'Running'), 0),
       coalesce(sum(status = 'Completed'), 0),
       coalesce(sum(status = 'Failed'), 0),
       (SELECT count(*) FROM history)
FROM instances

-- name: orchestrator_queue_depths
-- Ready or in-flight messages, and messages that become visible later (timers, back-off).
SELECT coalesce(sum(visible_at <= :now OR lock_token IS NOT NULL), 0),
       coalesce(sum(visible_at > :now AND lock_token IS NULL), 0)
FROM orchestrator_queue

-- name: worker_queue_depths
SELECT coalesce(tag, ''), count(*) FROM worker_queue GROUP BY tag

-- ============================================================================================
-- operator tools (duroxide CLI)
-- ============================================================================================

-- name: list_tables
SELECT name FROM sqlite_master WHERE type = 'table'
