-- Bounces and complaints (issue 10): a complaint suppresses at once, and three soft bounces of
-- different messages within 30 days suppress too (activities/bounces.py). A 5.7.x policy block
-- never suppresses: it is the sender's setup that was refused, not the address.
ALTER TABLE suppressions DROP CONSTRAINT IF EXISTS suppressions_source_check;
ALTER TABLE suppressions ADD CONSTRAINT suppressions_source_check
    CHECK (source IN ('unsubscribe', 'hard_bounce', 'manual', 'complaint', 'soft_bounce'));

-- Mailgun webhook tokens already used: its signature covers only timestamp + token, so a captured
-- request stays valid until its timestamp is stale (15 minutes); a token seen twice is a replay.
-- Rows older than an hour are pruned as new ones arrive.
CREATE TABLE IF NOT EXISTS webhook_tokens (
    provider text NOT NULL,
    token    text NOT NULL,
    seen_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, token)
);
CREATE INDEX IF NOT EXISTS webhook_tokens_seen_at ON webhook_tokens (seen_at);
