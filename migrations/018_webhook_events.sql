-- Outbound event webhooks (issue 14): what happened, told to the backend that owns the rows.
--
-- An event is written in the same transaction as the fact it reports: the send step's status
-- change (a trigger on messages), a lifecycle event (a trigger on message_events), a journey's
-- stage (the journey's own step writes it). Only when some enabled endpoint wants its type; each
-- wanting endpoint gets one delivery row. An endpoint whose deliveries were all done is woken by a
-- NOTIFY that PostgreSQL sends at commit (the worker's listener signals the endpoint's workflow),
-- so a busy endpoint costs one notification, not one per event.
CREATE TABLE IF NOT EXISTS webhook_endpoints (
    id          text PRIMARY KEY,
    url         text NOT NULL,
    description text NOT NULL DEFAULT '',
    event_types text[] NOT NULL DEFAULT '{}',  -- empty: every type
    secret      text NOT NULL,                 -- whsec_…: Standard Webhooks' symmetric key
    enabled     boolean NOT NULL DEFAULT true,
    awake       boolean NOT NULL DEFAULT false, -- its workflow has been told there is work
    created_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);

CREATE TABLE IF NOT EXISTS webhook_events (
    seq         bigserial PRIMARY KEY,         -- the order events are delivered in, per journey
    id          text NOT NULL UNIQUE,          -- evt_…: the webhook-id a receiver dedupes on
    type        text NOT NULL,
    journey_key text NOT NULL,                 -- journey/entity_id (or the address): the ordering key
    occurred_at timestamptz NOT NULL DEFAULT now(),
    data        jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_events_occurred ON webhook_events (occurred_at);

CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id              bigserial PRIMARY KEY,
    endpoint_id     text NOT NULL REFERENCES webhook_endpoints (id),
    event_seq       bigint NOT NULL REFERENCES webhook_events (seq) ON DELETE CASCADE,
    journey_key     text NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed', 'cancelled')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status     integer,                   -- the receiver's last HTTP status (NULL: no answer)
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    UNIQUE (endpoint_id, event_seq)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_pending
    ON webhook_deliveries (endpoint_id, event_seq) WHERE status = 'pending';
-- "an earlier pending one of the same journey": what holds a delivery back (and nothing else)
CREATE INDEX IF NOT EXISTS webhook_deliveries_journey
    ON webhook_deliveries (endpoint_id, journey_key, event_seq) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, id);

-- Journey-specific names for message events: a payment's reminder that went out is payment.reminded.
CREATE TABLE IF NOT EXISTS webhook_aliases (
    journey  text NOT NULL,
    template text NOT NULL,
    status   text NOT NULL,
    type     text NOT NULL,
    PRIMARY KEY (journey, template, status)
);
INSERT INTO webhook_aliases VALUES ('payment', 'payment_reminder', 'sent', 'payment.reminded')
ON CONFLICT DO NOTHING;

-- Record one event for every enabled endpoint that wants it. `p_fact` names what happened
-- (message.sent:<key>, the journey's n-th stage…): the same fact twice is one event, whose id
-- (evt_ + its hash) is the webhook-id every delivery and retry of it carries.
CREATE OR REPLACE FUNCTION webhook_emit(p_fact text, p_type text, p_key text, p_data jsonb)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_id text := 'evt_' || left(encode(sha256(convert_to(p_fact, 'UTF8')), 'hex'), 32);
    v_seq bigint;
    v_endpoint text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoints
                   WHERE enabled AND (event_types = '{}' OR p_type = ANY (event_types))) THEN
        RETURN;
    END IF;
    INSERT INTO webhook_events (id, type, journey_key, data) VALUES (v_id, p_type, p_key, p_data)
    ON CONFLICT (id) DO NOTHING RETURNING seq INTO v_seq;
    IF v_seq IS NULL THEN
        RETURN;
    END IF;
    INSERT INTO webhook_deliveries (endpoint_id, event_seq, journey_key)
    SELECT id, v_seq, p_key FROM webhook_endpoints
    WHERE enabled AND (event_types = '{}' OR p_type = ANY (event_types));
    -- The foreign key holds each endpoint's row (FOR KEY SHARE) until commit, so an endpoint's
    -- "nothing left, going to sleep" (FOR UPDATE) waits for this event instead of missing it.
    FOR v_endpoint IN
        UPDATE webhook_endpoints SET awake = true
        WHERE enabled AND NOT awake AND (event_types = '{}' OR p_type = ANY (event_types))
        RETURNING id
    LOOP
        PERFORM pg_notify('followups_webhooks', v_endpoint);
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION webhook_message_status() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_data jsonb;
    v_alias text;
BEGIN
    v_data := jsonb_build_object(
        'key', NEW.key, 'journey', NEW.journey, 'entity_id', NEW.entity_id, 'template', NEW.template,
        'recipient', NEW.recipient, 'channel', NEW.channel, 'category', NEW.category, 'variant', NEW.variant,
        'status', NEW.status, 'reason', NEW.reason, 'due_at', NEW.due_at, 'sent_at', NEW.sent_at);
    PERFORM webhook_emit('message.' || NEW.status || ':' || NEW.key, 'message.' || NEW.status,
                         NEW.journey || '/' || NEW.entity_id, v_data);
    SELECT type INTO v_alias FROM webhook_aliases
    WHERE journey = NEW.journey AND template = NEW.template AND status = NEW.status;
    IF v_alias IS NOT NULL THEN
        PERFORM webhook_emit(v_alias || ':' || NEW.key, v_alias, NEW.journey || '/' || NEW.entity_id, v_data);
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS webhook_message_status ON messages;
CREATE TRIGGER webhook_message_status AFTER UPDATE OF status ON messages FOR EACH ROW
    WHEN (NEW.status IN ('sent', 'skipped', 'failed') AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION webhook_message_status();

-- What a message did after the send step, as a person did it (machine opens and clicks are not events).
CREATE OR REPLACE FUNCTION webhook_message_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_type text;
    v_message messages%ROWTYPE;
BEGIN
    v_type := CASE NEW.kind WHEN 'delivered' THEN 'message.delivered' WHEN 'bounced' THEN 'message.bounced'
                            WHEN 'soft_bounced' THEN 'message.bounced' WHEN 'complained' THEN 'message.complained'
                            WHEN 'opened' THEN 'message.opened' WHEN 'clicked' THEN 'message.clicked'
                            WHEN 'unsubscribed' THEN 'recipient.unsubscribed' END;
    IF v_type IS NULL THEN
        RETURN NULL;
    END IF;
    IF NEW.key IS NOT NULL THEN
        SELECT * INTO v_message FROM messages WHERE key = NEW.key;
    END IF;
    PERFORM webhook_emit(
        'message-event:' || NEW.id, v_type,
        COALESCE(v_message.journey || '/' || v_message.entity_id, NEW.email),
        jsonb_build_object(
            'key', NEW.key, 'journey', v_message.journey, 'entity_id', v_message.entity_id,
            'template', v_message.template, 'recipient', NEW.email, 'at', NEW.at, 'reason', NEW.reason,
            'bounce', CASE NEW.kind WHEN 'bounced' THEN 'hard' WHEN 'soft_bounced' THEN 'soft' END,
            'provider', NEW.provider, 'detail', NEW.detail));
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS webhook_message_event ON message_events;
CREATE TRIGGER webhook_message_event AFTER INSERT ON message_events FOR EACH ROW
    WHEN (NOT NEW.machine)
    EXECUTE FUNCTION webhook_message_event();
