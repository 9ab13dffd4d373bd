-- The onboarding saga's temporary passwords (seed 003, "CTA approval"), one per approval, under a
-- reference (`onboarding-7/password`) that is all the workflow, its history and the outbox ever
-- hold. A row lives from the saga's credentials step until the welcome email is sent (the send
-- step deletes it) or the saga gives up on it (the saga deletes it); `expires_at` stops a row
-- nothing deleted from being revealed.
CREATE TABLE IF NOT EXISTS onboarding_secrets (
    ref        text PRIMARY KEY,
    secret     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
