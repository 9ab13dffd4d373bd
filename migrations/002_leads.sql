-- Leads of nurture campaigns: one row per lead journey, written when it starts (POST /v1/leads or
-- a CSV import) and updated by the journey when it ends. Campaign stats are read from here and
-- from the messages of each lead.
CREATE TABLE IF NOT EXISTS leads (
    lead_id              text PRIMARY KEY,
    campaign             text NOT NULL,
    email                text NOT NULL,
    status               text NOT NULL DEFAULT 'nurturing',
    conversion_reference text,
    started_at           timestamptz NOT NULL DEFAULT now(),
    ended_at             timestamptz
);
CREATE INDEX IF NOT EXISTS leads_campaign ON leads (campaign, status);
