-- Indexes for the recovery sweep, which runs every few seconds and must not scan whole tables.
CREATE INDEX staff_events_created ON staff_events (created_at);
CREATE INDEX conversations_reply_owed ON conversations (id) WHERE reply_owed_for IS NOT NULL;
CREATE INDEX conversations_human ON conversations (staff_activity_at) WHERE mode = 'human';

-- The append-only trigger fires even for sessions that switch replication roles to skip
-- ordinary triggers.
ALTER TABLE audit_log ENABLE ALWAYS TRIGGER audit_log_append_only;
