-- Digest recipients (issue 9, part 3): who gets which digest, in which time zone, and the progress
-- the backend pushed for them (PUT /v1/progress/{recipient}); null when it is pulled per send from
-- the progress callback instead. The dispatcher selects by zone, a keyset batch at a time:
--   WHERE time_zone = ANY($zones) AND $kind = ANY(digests) AND (time_zone, recipient) > ($z, $r)
--   ORDER BY time_zone, recipient
-- which the index below answers for the due zones only, whatever the table's size.
CREATE TABLE IF NOT EXISTS digest_recipients (
    recipient   text PRIMARY KEY,
    email       text NOT NULL,
    name        text NOT NULL,
    time_zone   text NOT NULL,
    digests     text[] NOT NULL,       -- weekly, monthly, manager
    progress    jsonb,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS digest_recipients_by_zone ON digest_recipients (time_zone, recipient);
