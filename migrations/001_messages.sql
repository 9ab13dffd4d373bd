-- Every message of every journey, keyed by its business step (`interview-42/followup-2`).
-- The primary key is what makes a second run of the same step never send a second email.
CREATE TABLE IF NOT EXISTS messages (
    key            text PRIMARY KEY,
    journey        text NOT NULL,
    entity_id      text NOT NULL,
    template       text NOT NULL,
    recipient      text NOT NULL,
    recipient_name text NOT NULL DEFAULT '',
    category       text NOT NULL,
    context        jsonb NOT NULL,
    status         text NOT NULL
                   CHECK (status IN ('queued', 'sending', 'sent', 'skipped', 'failed', 'dry_run')),
    message_id     text NOT NULL,
    subject        text,
    attempts       integer NOT NULL DEFAULT 0,
    reason         text,
    smtp_response  text,
    due_at         timestamptz,
    lease_until    timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    sent_at        timestamptz
);
CREATE INDEX IF NOT EXISTS messages_entity ON messages (journey, entity_id);
CREATE INDEX IF NOT EXISTS messages_status ON messages (status, created_at);

-- Addresses nothing is sent to: one-click unsubscribes, hard bounces (5.1.x), manual blocks.
CREATE TABLE IF NOT EXISTS suppressions (
    email      text PRIMARY KEY,
    reason     text NOT NULL,
    source     text NOT NULL CHECK (source IN ('unsubscribe', 'hard_bounce', 'manual')),
    created_at timestamptz NOT NULL DEFAULT now()
);
