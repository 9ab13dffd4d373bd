-- Who each declared journey was started for (one row per recipient or roster member), so that
-- "everyone enrolled in course X" is a query: the `enrollment` journeys of group X not ended by an
-- exit or cancel event.
CREATE TABLE IF NOT EXISTS journey_recipients (
    journey    text NOT NULL,
    entity_id  text NOT NULL,
    grp        text,
    email      text NOT NULL,
    recipient  jsonb NOT NULL,
    ended_by   text,                   -- the exit or cancel event that ended the journey
    started_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (journey, entity_id, email)
);
CREATE INDEX IF NOT EXISTS journey_recipients_group ON journey_recipients (journey, grp) WHERE ended_by IS NULL;

-- A new-content notice (seed 001) and its audience, frozen when it was posted.
CREATE TABLE IF NOT EXISTS announcements (
    course          text NOT NULL,
    announcement_id text NOT NULL,
    body            jsonb NOT NULL,       -- the request as given: the same id again must be the same body
    audience        integer NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (course, announcement_id)
);
CREATE TABLE IF NOT EXISTS announcement_audience (
    course          text NOT NULL,
    announcement_id text NOT NULL,
    email           text NOT NULL,
    recipient       jsonb NOT NULL,
    PRIMARY KEY (course, announcement_id, email)
);
