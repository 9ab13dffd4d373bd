-- Retention, analytics and erasure (issue 10, parts 5 and 6).

-- The daily purge takes the oldest finished messages first, a batch at a time; queued and sending
-- rows are never purged, so they stay out of the index and every batch reads only what it deletes.
CREATE INDEX IF NOT EXISTS messages_purge ON messages (created_at)
    WHERE status IN ('sent', 'skipped', 'failed', 'dry_run');
-- Read notifications are purged by age; unread ones are kept until the person has seen them.
CREATE INDEX IF NOT EXISTS notifications_purge ON notifications (created_at) WHERE read_at IS NOT NULL;
-- (message_events.at is indexed by migration 013; message_links go by their messages' keys.)

-- Analytics per template and per journey kind over a period of messages.created_at.
CREATE INDEX IF NOT EXISTS messages_template ON messages (template, created_at);
CREATE INDEX IF NOT EXISTS messages_journey ON messages (journey, created_at);

-- Erasure and export find a person's rows by address: as a child's parent (only messages of
-- recipients under 13 carry `parent`, so the index stays small), and as a lead.
CREATE INDEX IF NOT EXISTS messages_parent_email ON messages (lower(parent ->> 'email')) WHERE parent IS NOT NULL;
CREATE INDEX IF NOT EXISTS leads_email ON leads (email);
