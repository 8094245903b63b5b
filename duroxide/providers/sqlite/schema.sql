-- The whole SQLite schema. Idempotent: applied every time a provider opens a database.
-- Times are integer milliseconds since the epoch from the provider's clock; "0" means "never".
-- Ids and names are opaque TEXT and always bound as parameters.

-- One row per instance that has completed at least one turn (enqueueing never creates it).
CREATE TABLE IF NOT EXISTS instances (
    instance_id TEXT PRIMARY KEY,
    orchestration_name TEXT NOT NULL,
    orchestration_version TEXT NOT NULL,
    status TEXT NOT NULL,                       -- Running | Completed | Failed
    current_execution_id INTEGER NOT NULL,
    output TEXT,
    error TEXT,                                 -- JSON of ErrorDetails.to_json()
    custom_status TEXT,
    custom_status_version INTEGER NOT NULL DEFAULT 0,
    parent_instance_id TEXT,
    parent_execution_id INTEGER,
    parent_event_id INTEGER,
    trace_context TEXT,
    last_dispatcher TEXT,                       -- dispatcher that acked the last turn
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    completed_at INTEGER                        -- set while the status is terminal
);
-- Instance trees (sub-orchestrations) are walked by parent.
CREATE INDEX IF NOT EXISTS instances_parent ON instances (parent_instance_id)
    WHERE parent_instance_id IS NOT NULL;

-- One row per execution (1, then 2, 3... after each continue-as-new).
CREATE TABLE IF NOT EXISTS executions (
    instance_id TEXT NOT NULL REFERENCES instances (instance_id),
    execution_id INTEGER NOT NULL,
    status TEXT NOT NULL,                       -- Running | Completed | Failed | ContinuedAsNew
    output TEXT,
    started_at INTEGER NOT NULL,
    completed_at INTEGER,
    event_count INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (instance_id, execution_id)
) WITHOUT ROWID;

-- Append-only history; the primary key is what rejects a duplicate event id in an ack.
CREATE TABLE IF NOT EXISTS history (
    instance_id TEXT NOT NULL,
    execution_id INTEGER NOT NULL,
    event_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    source_event_id INTEGER,
    timestamp_ms INTEGER NOT NULL,
    data TEXT NOT NULL,                         -- JSON object of the kind-specific fields
    PRIMARY KEY (instance_id, execution_id, event_id),
    FOREIGN KEY (instance_id, execution_id) REFERENCES executions (instance_id, execution_id)
) WITHOUT ROWID;

-- Messages addressed to instances. A timer is a message whose visible_at is its fire time.
-- lock_token stamps the messages a fetch handed out; they are deleted by the ack.
CREATE TABLE IF NOT EXISTS orchestrator_queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    visible_at INTEGER NOT NULL,
    attempt_count INTEGER NOT NULL DEFAULT 0,
    lock_token TEXT,
    enqueued_at INTEGER NOT NULL,
    start_bias INTEGER NOT NULL DEFAULT 0       -- START_BIAS_MS on a client's start, else 0
);
-- Fetch walks visible messages in claim order: visible_at + start_bias (a client's start
-- yields to running instances' messages, see "Admission order" in providers/base.py), then
-- visible_at and id; visibility is checked in the index.
CREATE INDEX IF NOT EXISTS orchestrator_queue_claim
    ON orchestrator_queue (visible_at + start_bias, visible_at);
CREATE INDEX IF NOT EXISTS orchestrator_queue_instance ON orchestrator_queue (instance_id);

-- At most one live lock per instance: a row whose locked_until is in the future.
CREATE TABLE IF NOT EXISTS instance_locks (
    instance_id TEXT PRIMARY KEY,
    lock_token TEXT NOT NULL,
    locked_until INTEGER NOT NULL,
    dispatcher_id TEXT                          -- who holds the lock (recorded on ack)
);
CREATE INDEX IF NOT EXISTS instance_locks_token ON instance_locks (lock_token);

-- One row per scheduled activity, peek-locked by a worker (locked_until 0: not locked).
CREATE TABLE IF NOT EXISTS worker_queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    execution_id INTEGER NOT NULL,
    activity_id INTEGER NOT NULL,
    payload TEXT NOT NULL,                      -- ActivityWorkItem JSON
    session_id TEXT,
    tag TEXT,
    visible_at INTEGER NOT NULL,
    lock_token TEXT,
    locked_until INTEGER NOT NULL DEFAULT 0,
    attempt_count INTEGER NOT NULL DEFAULT 0,
    UNIQUE (instance_id, execution_id, activity_id)
);
CREATE INDEX IF NOT EXISTS worker_queue_visible ON worker_queue (visible_at);
CREATE INDEX IF NOT EXISTS worker_queue_lock ON worker_queue (lock_token)
    WHERE lock_token IS NOT NULL;
CREATE INDEX IF NOT EXISTS worker_queue_session ON worker_queue (session_id)
    WHERE session_id IS NOT NULL;

-- Session affinity: a session is owned by one worker while locked_until is in the future.
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL,
    locked_until INTEGER NOT NULL,
    last_activity_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_owner ON sessions (owner_id);

-- Per-instance key/value state written by turns and read by clients.
CREATE TABLE IF NOT EXISTS kv_store (
    instance_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (instance_id, key)
) WITHOUT ROWID;
