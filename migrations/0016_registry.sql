-- The registry (issue 18): customers, sites, doors and maintenance plans are
-- aggregates in `events` like jobs. This is their write-side index, kept in
-- the same transaction as their events (as `job_doors` is for jobs): what a
-- registry command checks against other entries (the customer a site
-- belongs to, the site a door is at, a serial already taken), what
-- `open_job` resolves a `door_id` to, and what `find_site` searches.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE registry_entries (
    kind        text        NOT NULL CHECK (kind IN ('customer', 'site', 'door', 'maintenance_plan')),
    id          text        NOT NULL,
    -- The customer it belongs to (a customer: itself).
    customer_id text        NOT NULL,
    -- Doors: their site.
    site_id     text,
    retired     boolean     NOT NULL DEFAULT false,
    -- Doors: lower(manufacturer) | lower(serial), unique among active doors.
    serial_key  text,
    -- Doors: in_service, impaired, out_of_service.
    status      text,
    -- Sites: name, address and reference, for the fuzzy search.
    search      text        NOT NULL DEFAULT '',
    -- The entry as its events leave it (details, status, version).
    entry       jsonb       NOT NULL,
    version     bigint      NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (kind, id)
);

CREATE UNIQUE INDEX registry_entries_serial ON registry_entries (serial_key)
    WHERE kind = 'door' AND NOT retired AND serial_key IS NOT NULL;
CREATE INDEX registry_entries_customer ON registry_entries (customer_id, kind);
CREATE INDEX registry_entries_site ON registry_entries (site_id) WHERE kind = 'door';
CREATE INDEX registry_entries_search ON registry_entries USING gin (search gin_trgm_ops)
    WHERE kind = 'site';
