-- Declared journeys: every save of a definition is a new immutable version. A running journey
-- carries the version it started with in its own input; this table is what new journeys start from.
CREATE TABLE IF NOT EXISTS journey_definitions (
    name       text NOT NULL,
    version    integer NOT NULL CHECK (version >= 1),
    body       jsonb NOT NULL,          -- the validated definition, as the workflow gets it
    digest     text NOT NULL,           -- sha256 of the body: saving the same body twice is one version
    source     text NOT NULL,           -- 'builtin' (shipped with Followups) or 'api'
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version)
);
