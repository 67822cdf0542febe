-- A site whose agent is connected but cannot reach its cluster's API server is
-- DEGRADED (not OFFLINE: the stream lives, the agent reports why), and the
-- per-site status of an object records the site's refusal of its latest version.
ALTER TABLE sites.sites DROP CONSTRAINT IF EXISTS sites_state_check;
ALTER TABLE sites.sites ADD CONSTRAINT sites_state_check
    CHECK (state IN ('registered', 'online', 'degraded', 'offline', 'decommissioned'));
ALTER TABLE sites.sites ADD COLUMN state_message text NOT NULL DEFAULT '';
ALTER TABLE replication.object_status ADD COLUMN failure jsonb;
