-- In-app notifications (seed 003): what the send step delivers on the `in_app` channel. One per
-- message key (the outbox row that records it), stored in the same transaction that marks that
-- row sent. `recipient` is the address the journey has for the person, lower-cased as in
-- messages.recipient. The id is the paging key (newest first) and what `POST .../{id}/read` names.
CREATE TABLE IF NOT EXISTS notifications (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key        text NOT NULL UNIQUE,
    recipient  text NOT NULL,
    journey    text NOT NULL,
    entity_id  text NOT NULL,
    template   text NOT NULL,
    title      text NOT NULL,
    body       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    read_at    timestamptz
);
CREATE INDEX IF NOT EXISTS notifications_recipient ON notifications (recipient, id DESC);
CREATE INDEX IF NOT EXISTS notifications_unread ON notifications (recipient, id) WHERE read_at IS NULL;

-- Seed 004 (COPPA): a message to a recipient under 13 keeps the parent's address and the copy rule
-- (`{"email", "name", "copy": "also"|"instead"}`), so a forced resend reaches the parent too.
ALTER TABLE messages ADD COLUMN IF NOT EXISTS parent jsonb;
