-- Notifications still `pending` longer than the threshold: the hook failed (or was never
-- reached) and only a later command on the job that does more than poll tries it again, so
-- a job driven by polls alone would keep it waiting unnoticed (notify.py).
-- Parameters: $now, $stuck_minutes.
SELECT job_name AS job, notification_id, event, hook, created_at, attempts, last_error
FROM warehouse_batch.notifications
WHERE state = 'pending'
  AND created_at < $now - to_minutes(CAST($stuck_minutes AS BIGINT))
ORDER BY created_at, notification_id
