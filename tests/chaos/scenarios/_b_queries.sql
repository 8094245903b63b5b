-- Queries of the chaos scenarios 9, 10, 12-16 (tests/chaos/scenarios/_common_b.py loads them
-- by name). {schema} is replaced by the quoted schema identifier; values are bound (%s).

-- name: duplicate_completions
-- Completions recorded more than once for the same scheduling event of one execution.
SELECT coalesce(sum(g.n - 1), 0)::bigint
FROM (SELECT count(*) AS n
      FROM {schema}.history AS h
      WHERE h.kind IN ('ActivityCompleted', 'ActivityFailed', 'TimerFired',
                       'SubOrchestrationCompleted', 'SubOrchestrationFailed')
      GROUP BY h.instance_id, h.execution_id, h.source_event_id) AS g;

-- name: duplicate_terminals
-- Executions with more than one terminal event.
SELECT coalesce(sum(g.n - 1), 0)::bigint
FROM (SELECT count(*) AS n
      FROM {schema}.history AS h
      WHERE h.kind IN ('OrchestrationCompleted', 'OrchestrationFailed',
                       'OrchestrationContinuedAsNew')
      GROUP BY h.instance_id, h.execution_id) AS g;

-- name: unanswered_in_finished
-- Activities or timers scheduled by a completed execution whose completion never arrived.
SELECT count(*)::bigint
FROM {schema}.history AS s
JOIN {schema}.executions AS e
  ON e.instance_id = s.instance_id AND e.execution_id = s.execution_id
WHERE e.status = 'Completed'
  AND s.kind IN ('ActivityScheduled', 'TimerCreated')
  AND NOT EXISTS (SELECT 1 FROM {schema}.history AS c
                  WHERE c.instance_id = s.instance_id AND c.execution_id = s.execution_id
                    AND c.source_event_id = s.event_id
                    AND c.kind IN ('ActivityCompleted', 'ActivityFailed', 'TimerFired'));

-- name: statuses
SELECT i.instance_id, i.status, i.error FROM {schema}.instances AS i;

-- name: count_kind
-- Events of one kind per instance.
SELECT h.instance_id, count(*)::bigint
FROM {schema}.history AS h
WHERE h.kind = %s
GROUP BY h.instance_id;

-- name: catalog_snapshot
-- Relations and functions of the system and public schemas, the schemas named in the array
-- (hostile names: they must not come to exist), and the roles: what hostile input must not
-- change. Other schemas are left out: other sessions may create theirs meanwhile.
SELECT 'rel:' || n.nspname || '.' || c.relname || ':' || c.relkind::text
FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname IN ('pg_catalog', 'public', 'information_schema') OR n.nspname = ANY (%s)
UNION ALL
SELECT 'fn:' || n.nspname || '.' || p.proname || '('
       || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')'
FROM pg_catalog.pg_proc AS p JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
WHERE n.nspname IN ('pg_catalog', 'public', 'information_schema') OR n.nspname = ANY (%s)
UNION ALL
SELECT 'ns:' || n.nspname FROM pg_catalog.pg_namespace AS n WHERE n.nspname = ANY (%s)
UNION ALL
SELECT 'role:' || r.rolname FROM pg_catalog.pg_roles AS r;

-- name: schema_snapshot
-- Relations and functions of one schema (its catalog must not change under hostile input).
SELECT 'rel:' || c.relname || ':' || c.relkind::text
FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = %s
UNION ALL
SELECT 'fn:' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')'
FROM pg_catalog.pg_proc AS p JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
WHERE n.nspname = %s;

-- name: data_digest
-- A digest of the durable data (history, instances, kv) of the given instances.
SELECT (SELECT md5(coalesce(string_agg(h.instance_id || '|' || h.execution_id || '|'
                   || h.event_id || '|' || h.kind || '|' || h.data, ',' ORDER BY h.instance_id,
                   h.execution_id, h.event_id), '')) FROM {schema}.history AS h
                   WHERE h.instance_id = ANY (%s))
    || (SELECT md5(coalesce(string_agg(i.instance_id || '|' || i.status || '|'
                   || coalesce(i.output, ''), ',' ORDER BY i.instance_id), ''))
        FROM {schema}.instances AS i WHERE i.instance_id = ANY (%s))
    || (SELECT md5(coalesce(string_agg(k.instance_id || '|' || k.key || '|' || k.value, ','
                   ORDER BY k.instance_id, k.key), ''))
        FROM {schema}.kv_store AS k WHERE k.instance_id = ANY (%s));

-- name: install_duplicator
-- Scenario 9: every activity completion and timer firing the runtime enqueues is inserted a
-- second time at once (a redelivery in the same batch) and saved in chaos_copies so it can be
-- inserted yet again later (a redelivery long after the original was consumed). External
-- events are only saved: a second EventRaised row is a second raise (they carry no id).
CREATE TABLE {schema}.chaos_copies (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instance_id text NOT NULL,
    kind text NOT NULL,
    payload text NOT NULL
);
CREATE FUNCTION {schema}.chaos_duplicate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF pg_trigger_depth() > 1 THEN
        RETURN NULL;
    END IF;
    IF NEW.kind IN ('ActivityCompleted', 'TimerFired', 'ExternalRaised') THEN
        INSERT INTO {schema}.chaos_copies (instance_id, kind, payload)
        VALUES (NEW.instance_id, NEW.kind, NEW.payload);
    END IF;
    IF NEW.kind IN ('ActivityCompleted', 'TimerFired') THEN
        INSERT INTO {schema}.orchestrator_queue (instance_id, kind, payload, visible_at,
                                                 enqueued_at)
        VALUES (NEW.instance_id, NEW.kind, NEW.payload, NEW.visible_at, NEW.enqueued_at);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER chaos_duplicate AFTER INSERT ON {schema}.orchestrator_queue
FOR EACH ROW EXECUTE FUNCTION {schema}.chaos_duplicate();

-- name: copies_by_kind
SELECT c.kind, count(*)::bigint FROM {schema}.chaos_copies AS c GROUP BY c.kind;

-- name: redeliver_late
-- Scenario 9: insert every saved completion and timer firing again, long after the original.
WITH late AS (
    INSERT INTO {schema}.orchestrator_queue (instance_id, kind, payload, visible_at, enqueued_at)
    SELECT c.instance_id, c.kind, c.payload, {schema}.duroxide_now_ms(),
           {schema}.duroxide_now_ms()
    FROM {schema}.chaos_copies AS c
    WHERE c.kind IN ('ActivityCompleted', 'TimerFired')
    ORDER BY c.id
    RETURNING instance_id),
claims AS (
    INSERT INTO {schema}.instance_queue AS r (instance_id, visible_at)
    SELECT d.instance_id, {schema}.duroxide_now_ms()
    FROM (SELECT DISTINCT l.instance_id FROM late AS l) AS d
    ON CONFLICT (instance_id) DO UPDATE SET visible_at = excluded.visible_at
    WHERE r.lock_token IS NULL)
SELECT count(*)::bigint FROM late;

-- name: queued_messages
SELECT count(*)::bigint FROM {schema}.orchestrator_queue;

-- name: disable_duplicator
ALTER TABLE {schema}.orchestrator_queue DISABLE TRIGGER chaos_duplicate;

-- name: custom_status_count
SELECT count(*)::bigint FROM {schema}.instances AS i WHERE i.custom_status = %s;

-- name: inject_undecodable
-- Scenario 10: a message whose payload cannot be decoded, queued for an instance.
WITH m AS (
    INSERT INTO {schema}.orchestrator_queue (instance_id, kind, payload, visible_at, enqueued_at)
    VALUES (%s, 'ExternalRaised', %s, {schema}.duroxide_now_ms(), {schema}.duroxide_now_ms())
    RETURNING instance_id)
INSERT INTO {schema}.instance_queue AS r (instance_id, visible_at)
SELECT m.instance_id, {schema}.duroxide_now_ms() FROM m
ON CONFLICT (instance_id) DO UPDATE SET visible_at = excluded.visible_at
WHERE r.lock_token IS NULL;

-- name: oversized_rows
-- Scenario 12: stored rows (queues, history, outputs, custom status, KV) longer than the
-- bound: the payload limit plus the envelope of one row.
SELECT (SELECT count(*) FROM {schema}.orchestrator_queue AS q WHERE octet_length(q.payload) > %(limit)s)
     + (SELECT count(*) FROM {schema}.worker_queue AS w WHERE octet_length(w.payload) > %(limit)s)
     + (SELECT count(*) FROM {schema}.history AS h WHERE octet_length(h.data) > %(limit)s)
     + (SELECT count(*) FROM {schema}.instances AS i
        WHERE octet_length(coalesce(i.output, '')) > %(limit)s
           OR octet_length(coalesce(i.custom_status, '')) > %(limit)s)
     + (SELECT count(*) FROM {schema}.kv_store AS k WHERE octet_length(k.value) > %(limit)s);

-- name: queued_for
-- Scenario 12: orchestrator-queue rows of the given instances, by kind.
SELECT q.instance_id, q.kind FROM {schema}.orchestrator_queue AS q
WHERE q.instance_id = ANY (%s) ORDER BY q.id;

-- name: timers_armed
-- Scenario 16: how many timers were armed, and when the last one was (ms, database clock).
SELECT count(*)::bigint, max(h.timestamp_ms) FROM {schema}.history AS h
WHERE h.kind = 'TimerCreated';
