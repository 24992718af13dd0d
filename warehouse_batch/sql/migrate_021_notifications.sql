-- warehouse-batch state, version 21: notifications (on_complete / on_failure hooks).
-- One row per event a hook may be told about, written BEFORE the hook is called (`pending`)
-- and marked `sent` after it answered, so an event fires once across crashes and concurrent
-- runs (notify.py). A job's completion is the set of its collected batches no earlier
-- completion covered (`notified_batches`); a failure is one incident per job until a later
-- command on the job succeeds (`resolved_at`).
CREATE TABLE IF NOT EXISTS warehouse_batch.notifications (
    notification_id VARCHAR PRIMARY KEY,  -- wbn_<24 hex>, also in the payload (dedupe key)
    job_name        VARCHAR NOT NULL,
    job_file        VARCHAR,              -- the job file (resolved) that recorded the event
    event           VARCHAR NOT NULL,     -- complete | failure
    run_id          VARCHAR,              -- the command that recorded it
    hook            VARCHAR,              -- what it goes to, for people (a URL's path elided)
    state           VARCHAR NOT NULL,     -- pending | sent | no_hook (no hook when recorded)
    payload         VARCHAR NOT NULL,     -- the JSON report sent (API keys redacted)
    created_at      TIMESTAMP NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_attempt_at TIMESTAMP,
    last_error      VARCHAR,
    sent_at         TIMESTAMP,
    claimed_by      VARCHAR,              -- host:pid of the process calling the hook now
    claimed_until   TIMESTAMP,            -- the claim lapses then (or when that pid is gone)
    resolved_at     TIMESTAMP             -- failure: a later command on the job succeeded
);

-- Collected batches whose completion has been recorded (one notification covers them).
CREATE TABLE IF NOT EXISTS warehouse_batch.notified_batches (
    batch_id        VARCHAR PRIMARY KEY,
    notification_id VARCHAR NOT NULL
);

-- Work collected before this version completed before hooks existed: it fires nothing.
INSERT OR IGNORE INTO warehouse_batch.notified_batches
SELECT batch_id, 'before_notifications' FROM warehouse_batch.batches WHERE state = 'collected';
