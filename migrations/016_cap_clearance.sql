-- When a message being sent passed its category's frequency cap: a cap counts the person's
-- messages sent in its period and those being sent that already passed it, decided one at a time
-- per recipient and category (an advisory lock), so messages at the same moment never all pass.
ALTER TABLE messages ADD COLUMN IF NOT EXISTS cap_cleared_at timestamptz;
