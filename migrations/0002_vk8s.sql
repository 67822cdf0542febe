-- vK8s gateway: virtual clusters, the Kubernetes objects stored in them, and
-- the change log with its global revision.
--
-- Revisions are allocated from the single-row counter `vk8s.revision` inside
-- the writing transaction (`UPDATE ... SET value = value + 1 RETURNING value`).
-- The row lock is held until commit, so writers commit in revision order and
-- a reader that sees revision N also sees every revision below it: the change
-- log has no visible gaps. Writers take object row locks first and the
-- counter last, keeping the time the counter is held short.
--
-- Tenant-owned rows carry tenant_id and are guarded by the same row-level
-- security policy as the tenancy schema.

CREATE SCHEMA vk8s;
GRANT USAGE ON SCHEMA vk8s TO manifold_app;

CREATE TABLE vk8s.virtual_clusters (
    id            uuid PRIMARY KEY,
    tenant_id     uuid NOT NULL,
    -- The tenant's name (`acme`); the Kubernetes API path carries names.
    tenant        text NOT NULL,
    namespace     text NOT NULL,
    name          text NOT NULL,
    display_name  text NOT NULL DEFAULT '',
    labels        jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- Full virtual site names (`tenants/t/namespaces/n/virtualSites/vs`).
    virtual_sites text[] NOT NULL DEFAULT '{}',
    version       bigint NOT NULL DEFAULT 1,
    create_time   timestamptz NOT NULL DEFAULT now(),
    update_time   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, namespace, name)
);
CREATE INDEX virtual_clusters_by_name ON vk8s.virtual_clusters (tenant, namespace, name);

-- The latest state of every object. `body` is the complete object as served
-- (metadata.resourceVersion included).
CREATE TABLE vk8s.objects (
    tenant_id        uuid NOT NULL,
    vcluster_id      uuid NOT NULL REFERENCES vk8s.virtual_clusters (id) ON DELETE CASCADE,
    api_group        text NOT NULL,
    kind             text NOT NULL,
    namespace        text NOT NULL,
    name             text NOT NULL,
    uid              uuid NOT NULL,
    resource_version bigint NOT NULL,
    create_revision  bigint NOT NULL,
    generation       bigint NOT NULL DEFAULT 0,
    deletion_time    timestamptz,
    body             jsonb NOT NULL,
    PRIMARY KEY (vcluster_id, api_group, kind, namespace, name)
);

-- One row per change, written in the same transaction as the object.
-- `body` is the object after the change (for DELETED: its last state);
-- `prev_body` the object before it (NULL for ADDED). `prev_body` lets a list
-- be served at an older revision: the state of a key at revision R is the
-- `prev_body` of its first change after R.
CREATE TABLE vk8s.changes (
    revision    bigint PRIMARY KEY,
    tenant_id   uuid NOT NULL,
    vcluster_id uuid NOT NULL,
    -- `tenants/{t}/namespaces/{n}/virtualClusters/{v}`; kept after the
    -- virtual cluster itself is gone.
    vcluster    text NOT NULL,
    api_group   text NOT NULL,
    kind        text NOT NULL,
    namespace   text NOT NULL,
    name        text NOT NULL,
    event       text NOT NULL CHECK (event IN ('ADDED', 'MODIFIED', 'DELETED')),
    body        jsonb NOT NULL,
    prev_body   jsonb,
    change_time timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX changes_by_kind ON vk8s.changes (vcluster_id, api_group, kind, revision);

-- The global revision counter (one row).
CREATE TABLE vk8s.revision (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    value     bigint NOT NULL
);
INSERT INTO vk8s.revision (singleton, value) VALUES (true, 0);

-- Changes at or below `revision` have been deleted from the log.
CREATE TABLE vk8s.compaction (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    revision     bigint NOT NULL,
    compact_time timestamptz
);
INSERT INTO vk8s.compaction (singleton, revision) VALUES (true, 0);

GRANT SELECT, INSERT, UPDATE, DELETE ON vk8s.virtual_clusters, vk8s.objects, vk8s.changes TO manifold_app;
GRANT SELECT, UPDATE ON vk8s.revision, vk8s.compaction TO manifold_app;

ALTER TABLE vk8s.virtual_clusters ENABLE ROW LEVEL SECURITY;
ALTER TABLE vk8s.virtual_clusters FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON vk8s.virtual_clusters
    USING (tenancy.tenant_visible(tenant_id)) WITH CHECK (tenancy.tenant_visible(tenant_id));

ALTER TABLE vk8s.objects ENABLE ROW LEVEL SECURITY;
ALTER TABLE vk8s.objects FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON vk8s.objects
    USING (tenancy.tenant_visible(tenant_id)) WITH CHECK (tenancy.tenant_visible(tenant_id));

ALTER TABLE vk8s.changes ENABLE ROW LEVEL SECURITY;
ALTER TABLE vk8s.changes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON vk8s.changes
    USING (tenancy.tenant_visible(tenant_id)) WITH CHECK (tenancy.tenant_visible(tenant_id));

-- Statistics for the one-row tables from the start, so plans never assume
-- thousands of rows in them.
ANALYZE vk8s.revision, vk8s.compaction;
