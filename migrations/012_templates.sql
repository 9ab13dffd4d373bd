-- Templates in the database. Every save is a new immutable version of a template's subject, text
-- and html (the files in templates/ stay the defaults); a publication puts a version in force from
-- its moment on, and the history stays: the version in force at time T is the latest publication
-- at or before T, which is what a journey started at T keeps getting.
CREATE TABLE IF NOT EXISTS template_versions (
    name       text NOT NULL,
    version    integer NOT NULL CHECK (version >= 1),
    category   text NOT NULL,            -- a name in `categories`: what preferences act on
    subject    text NOT NULL,
    html       text NOT NULL,
    text       text NOT NULL,
    variants   jsonb NOT NULL DEFAULT '[]',  -- [{name, weight, subject?, html?, text?}]: A/B arms
    sample     jsonb NOT NULL DEFAULT '{}',  -- the context it was checked with (its variables)
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version)
);

CREATE TABLE IF NOT EXISTS template_publications (
    id           bigserial PRIMARY KEY,  -- orders two publications of one instant
    name         text NOT NULL,
    version      integer NOT NULL,
    published_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    FOREIGN KEY (name, version) REFERENCES template_versions (name, version)
);

-- "the latest publication of a name at or before T": one index range scan, newest first.
CREATE INDEX IF NOT EXISTS template_publications_in_force
    ON template_publications (name, published_at DESC, id DESC);
