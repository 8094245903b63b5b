-- The ledger workload's tables and statements (tests/chaos/ledger.py), in the scenario's schema.

-- name: create_tables
-- ledger: one row per execution attempt of an activity (re-executions included);
-- effects: the committed side effect, written idempotently per scheduled activity (its
-- instance, step and activity id): a re-execution of the same scheduled activity applies
-- nothing, but the same step scheduled again under another id (a turn applied twice, a replay
-- that scheduled it anew) applies a second effect -- a duplicate effect.
CREATE TABLE IF NOT EXISTS {schema}.ledger (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instance_id text NOT NULL,
    idx integer NOT NULL,
    activity_id bigint NOT NULL,
    pid integer NOT NULL,
    worker_id text NOT NULL,
    started_ms bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.effects (
    instance_id text NOT NULL,
    idx integer NOT NULL,
    value bigint NOT NULL,
    activity_id bigint NOT NULL,
    applied_ms bigint NOT NULL,
    UNIQUE (instance_id, idx, activity_id)
)

-- name: record_attempt
INSERT INTO {schema}.ledger (instance_id, idx, activity_id, pid, worker_id, started_ms)
VALUES (%(instance_id)s, %(idx)s, %(activity_id)s, %(pid)s, %(worker_id)s, %(now_ms)s)

-- name: record_effect
INSERT INTO {schema}.effects (instance_id, idx, value, activity_id, applied_ms)
VALUES (%(instance_id)s, %(idx)s, %(value)s, %(activity_id)s, %(now_ms)s)
ON CONFLICT (instance_id, idx, activity_id) DO NOTHING

-- name: counts
-- attempts, distinct scheduled activities attempted, distinct steps attempted, effects,
-- distinct steps with an effect
SELECT (SELECT count(*) FROM {schema}.ledger),
       (SELECT count(*)
        FROM (SELECT DISTINCT instance_id, idx, activity_id FROM {schema}.ledger) AS s),
       (SELECT count(*) FROM (SELECT DISTINCT instance_id, idx FROM {schema}.ledger) AS d),
       (SELECT count(*) FROM {schema}.effects),
       (SELECT count(*) FROM (SELECT DISTINCT instance_id, idx FROM {schema}.effects) AS e)

-- name: effects_mismatched
-- Completed instances whose committed effects differ in number from the activity completions
-- in their history: the side effects and the history disagree.
SELECT count(*)
FROM {schema}.instances AS i
WHERE i.status = 'Completed'
  AND (SELECT count(*) FROM {schema}.effects AS e WHERE e.instance_id = i.instance_id)
      <> (SELECT count(*) FROM {schema}.history AS h
          WHERE h.instance_id = i.instance_id AND h.execution_id = i.current_execution_id
            AND h.kind = 'ActivityCompleted')

-- name: attempts
-- Every attempt with the time its activity's completion was committed to history (NULL: none),
-- and its step (instance, idx).
SELECT l.pid, l.worker_id, l.started_ms, c.timestamp_ms, l.instance_id, l.idx
FROM {schema}.ledger AS l
JOIN {schema}.instances AS i ON i.instance_id = l.instance_id
LEFT JOIN {schema}.history AS c
  ON c.instance_id = l.instance_id AND c.execution_id = i.current_execution_id
 AND c.kind = 'ActivityCompleted' AND c.source_event_id = l.activity_id

-- name: completions_after
-- Per instance, the first history event committed at or after a time (ms since the epoch).
SELECT h.instance_id, min(h.timestamp_ms)
FROM {schema}.history AS h
WHERE h.instance_id = ANY (%(ids)s) AND h.timestamp_ms >= %(since_ms)s
GROUP BY h.instance_id

-- name: locked_instances
-- Instances whose turn is in progress (a live lock) right now.
SELECT r.instance_id
FROM {schema}.instance_queue AS r
WHERE r.lock_token IS NOT NULL AND r.locked_until > {schema}.duroxide_now_ms()

-- name: terminate_backends
-- End the server sessions of one application name (never anyone else's).
SELECT count(*) FILTER (WHERE pg_terminate_backend(a.pid))
FROM pg_stat_activity AS a
WHERE a.application_name = %(application_name)s AND a.pid <> pg_backend_pid()

-- name: first_event_after
-- The first history event (any instance) stamped at or after a time: the next progress.
SELECT min(h.timestamp_ms) FROM {schema}.history AS h WHERE h.timestamp_ms >= %(since_ms)s
