-- A class session's roster, kept out of the workflow's history: the journey changes it through an
-- activity (one writer, in event order) and fans out over it in keyset chunks. A removed attendee
-- stays as a row (removed = true), so a start's roster arriving later cannot bring them back.
CREATE TABLE IF NOT EXISTS roster (
    session_id  text NOT NULL,
    attendee_id text NOT NULL,
    attendee    jsonb,                 -- null for a removal that came before the attendee did
    removed     boolean NOT NULL DEFAULT false,
    feedback    boolean NOT NULL DEFAULT false,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, attendee_id)
);
