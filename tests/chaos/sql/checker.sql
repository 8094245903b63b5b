-- The invariant checker's reads: plain SELECTs over the duroxide tables of one schema, never
-- the provider's functions, so a bug in the runtime's code paths cannot hide itself.

-- name: instances
SELECT instance_id, status, current_execution_id, output
FROM {schema}.instances
ORDER BY instance_id

-- name: executions
SELECT instance_id, execution_id, status, output, event_count
FROM {schema}.executions
ORDER BY instance_id, execution_id

-- name: history
-- Every event without its payload, except the terminal events (their output is checked).
SELECT instance_id, execution_id, event_id, kind, source_event_id,
       CASE WHEN kind IN ('OrchestrationCompleted', 'OrchestrationFailed',
                          'OrchestrationContinuedAsNew') THEN data END AS data
FROM {schema}.history
ORDER BY instance_id, execution_id, event_id

-- name: queued
-- Rows left in each queue, per instance.
SELECT 'orchestrator_queue' AS queue, instance_id, count(*) AS n
FROM {schema}.orchestrator_queue GROUP BY instance_id
UNION ALL
SELECT 'worker_queue', instance_id, count(*) FROM {schema}.worker_queue GROUP BY instance_id
UNION ALL
SELECT 'instance_queue', instance_id, count(*) FROM {schema}.instance_queue GROUP BY instance_id
