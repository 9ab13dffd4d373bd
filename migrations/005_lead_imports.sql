-- Each CSV upload to /v1/leads/import: its counts, and every rejected row with its line and
-- reason (the answer carries only the first ones; the rest are paged from here). Kept 30 days.
CREATE TABLE IF NOT EXISTS lead_imports (
    import_id        text PRIMARY KEY,
    campaign         text,
    rows             integer NOT NULL,
    started          integer NOT NULL,
    already_imported integer NOT NULL,
    rejected         integer NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS lead_imports_created_at ON lead_imports (created_at);

CREATE TABLE IF NOT EXISTS lead_import_problems (
    import_id text NOT NULL REFERENCES lead_imports ON DELETE CASCADE,
    n         integer NOT NULL,      -- 1, 2, … in file order: the paging key
    line      integer NOT NULL,
    field     text NOT NULL,
    reason    text NOT NULL,
    PRIMARY KEY (import_id, n)
);
