-- How a message went out, so a forced resend goes the same way (a webhook message by webhook).
ALTER TABLE messages ADD COLUMN IF NOT EXISTS channel text NOT NULL DEFAULT 'email';
ALTER TABLE messages ADD COLUMN IF NOT EXISTS phone text;
