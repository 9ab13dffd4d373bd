-- Broadcast campaigns (seed 004; seed 001's bulk sends): a draft, its audience as added (a list, a
-- CSV, a filter over known recipients), then, when sending starts, the audience frozen with a dense
-- sequence number in a random order, so a batch is a range of `seq` and the first 20 % is a fair
-- A/B test sample. Nurture campaigns (seed 003) are the leads' `campaign` names; GET /v1/campaigns
-- lists both.
CREATE TABLE IF NOT EXISTS campaigns (
    campaign_id   text PRIMARY KEY,
    name          text NOT NULL,
    template      text NOT NULL,
    category      text NOT NULL,
    priority      text NOT NULL CHECK (priority IN ('urgent', 'high', 'normal', 'low')),
    context       jsonb NOT NULL DEFAULT '{}',
    ab_test       jsonb,                    -- the test plan (starter/routes/campaigns.AbTestPlan)
    filters       jsonb NOT NULL DEFAULT '[]',  -- audience filters, resolved when sending starts
    status        text NOT NULL DEFAULT 'draft'
                  CHECK (status IN ('draft', 'scheduled', 'sending', 'paused', 'completed', 'cancelled')),
    scheduled_at  timestamptz,
    audience      integer,                  -- the frozen audience's size (NULL until frozen)
    frozen_at     timestamptz,              -- also the moment its template version is pinned to
    batch         integer,                  -- recipients per send activity, fixed when frozen
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz
);
CREATE INDEX IF NOT EXISTS campaigns_created ON campaigns (created_at DESC);

-- Recipients added to a draft by list or CSV (a filter's are found when sending starts).
CREATE TABLE IF NOT EXISTS campaign_members (
    campaign_id text NOT NULL REFERENCES campaigns ON DELETE CASCADE,
    email       text NOT NULL,
    recipient   jsonb NOT NULL,
    fields      jsonb NOT NULL DEFAULT '{}',  -- their own template variables (a CSV's other columns)
    PRIMARY KEY (campaign_id, email)
);

-- The frozen audience: the batch (lo, hi] is `seq > lo AND seq <= hi`, read through the key.
CREATE TABLE IF NOT EXISTS campaign_audience (
    campaign_id text NOT NULL REFERENCES campaigns ON DELETE CASCADE,
    seq         integer NOT NULL,
    email       text NOT NULL,
    recipient   jsonb NOT NULL,
    fields      jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (campaign_id, seq)
);

-- Conversions reported by the backend (an A/B test may be decided on them).
CREATE TABLE IF NOT EXISTS campaign_conversions (
    campaign_id  text NOT NULL REFERENCES campaigns ON DELETE CASCADE,
    email        text NOT NULL,
    converted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, email)
);

-- The A/B decision, once made: each arm's counts, the test, the winner (NULL: none significant).
CREATE TABLE IF NOT EXISTS campaign_ab_decisions (
    campaign_id text PRIMARY KEY REFERENCES campaigns ON DELETE CASCADE,
    decision    jsonb NOT NULL,
    decided_at  timestamptz NOT NULL DEFAULT now()
);
