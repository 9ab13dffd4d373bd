-- What a recipient wants to receive (issue 10). Every message has a category; a critical one
-- (an appointment reminder, a payment confirmation) ignores the recipient's opt-outs, never a
-- suppression. Per recipient: a choice per (category, channel), and unsubscribe-all.
CREATE TABLE IF NOT EXISTS categories (
    name        text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    description text NOT NULL DEFAULT '',
    critical    boolean NOT NULL DEFAULT false,  -- false unless said: a new category never bypasses opt-outs
    -- The local hours messages may go out ("08:00-21:00"; "22:00-06:00" spans midnight); NULL:
    -- the recipient's own window or the service's setting.
    send_window text CHECK (send_window ~ '^([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]$'),
    daily_cap   integer CHECK (daily_cap > 0),  -- per recipient and local day, across journeys; NULL: none
    cap_policy  text NOT NULL DEFAULT 'defer' CHECK (cap_policy IN ('defer', 'drop')),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

INSERT INTO categories (name, description, critical) VALUES
    ('transactional', 'Messages about something you did or booked: confirmations, receipts, account notices', true),
    ('reminders', 'Reminders of what is coming up: sessions, interviews, appointments, payments', false),
    ('progress', 'Progress reports and digests', false),
    ('feedback', 'Requests for feedback after a session or interview', false),
    ('marketing', 'News, offers and invitations', false)
ON CONFLICT (name) DO NOTHING;

-- A recipient's choice for one category on one channel; no row: subscribed.
CREATE TABLE IF NOT EXISTS preferences (
    email      text NOT NULL,  -- lower-cased
    category   text NOT NULL REFERENCES categories (name) ON UPDATE CASCADE ON DELETE CASCADE,
    channel    text NOT NULL CHECK (channel IN ('email', 'in_app', 'webhook')),
    subscribed boolean NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (email, category, channel)
);

CREATE TABLE IF NOT EXISTS recipient_settings (
    email            text PRIMARY KEY,  -- lower-cased
    unsubscribed_all boolean NOT NULL DEFAULT false,  -- everything but critical categories
    send_window      text CHECK (send_window ~ '^([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]$'),
    time_zone        text,  -- IANA, checked by the API
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- GDPR erasure keeps only sha256 (hex) of the lower-cased address: such an address is suppressed.
CREATE TABLE IF NOT EXISTS erased_recipients (
    email_hash text PRIMARY KEY CHECK (email_hash ~ '^[0-9a-f]{64}$'),
    erased_at  timestamptz NOT NULL DEFAULT now()
);
