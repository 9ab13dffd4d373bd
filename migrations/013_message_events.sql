-- The life of each message after the send step (issue 10): every event with its time, and the
-- furthest point the message reached. Events come from the send step (sent, failed), the
-- tracking routes (opened, clicked), provider webhooks and bounce messages (delivered, bounced,
-- complained). Opens by image proxies and clicks by link scanners are kept, flagged `machine`.
CREATE TABLE IF NOT EXISTS message_events (
    id                bigserial PRIMARY KEY,
    key               text,            -- messages.key; NULL when nothing ties the event to one message
    email             text NOT NULL,   -- lower-cased
    kind              text NOT NULL CHECK (kind IN ('sent', 'delivered', 'opened', 'clicked', 'soft_bounced',
                                                    'bounced', 'complained', 'failed', 'unsubscribed', 'deferred')),
    at                timestamptz NOT NULL DEFAULT now(),
    machine           boolean NOT NULL DEFAULT false,
    reason            text,
    detail            jsonb,
    provider          text,
    provider_event_id text,
    UNIQUE (provider, provider_event_id)
);
CREATE INDEX IF NOT EXISTS message_events_key ON message_events (key, kind);
CREATE INDEX IF NOT EXISTS message_events_email ON message_events (email, kind, at);
CREATE INDEX IF NOT EXISTS message_events_at ON message_events (at);

-- The links of each rendered message, by position: a click URL names (key, idx), never the URL.
CREATE TABLE IF NOT EXISTS message_links (
    key text NOT NULL,
    idx integer NOT NULL,
    url text NOT NULL,
    PRIMARY KEY (key, idx)
);

-- A status only moves forward: queued → sent → delivered → opened → clicked; a soft bounce sits
-- between sent and delivered; a hard bounce and a complaint end it; failed is where sent would be.
ALTER TABLE messages ADD COLUMN IF NOT EXISTS lifecycle text NOT NULL DEFAULT 'queued';
ALTER TABLE messages ADD COLUMN IF NOT EXISTS template_version integer;  -- NULL: the file default
ALTER TABLE messages ADD COLUMN IF NOT EXISTS variant text;              -- the A/B variant it got
CREATE INDEX IF NOT EXISTS messages_message_id ON messages (message_id);
CREATE INDEX IF NOT EXISTS messages_recipient ON messages (recipient, category, sent_at);

CREATE OR REPLACE FUNCTION lifecycle_rank(status text) RETURNS integer LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE status WHEN 'queued' THEN 0 WHEN 'sent' THEN 1 WHEN 'failed' THEN 1
                       WHEN 'soft_bounced' THEN 2 WHEN 'delivered' THEN 3 WHEN 'opened' THEN 4
                       WHEN 'clicked' THEN 5 WHEN 'bounced' THEN 6 WHEN 'complained' THEN 7 END
$$;
