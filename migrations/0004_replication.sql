-- Replication: each site's cursor and session, and the observed state of the
-- sites (object status per site, pods, events).
--
-- Isolation: rows about a tenant's objects and pods carry tenant_id and follow
-- the same row-level security as the tenancy schema. Rows about a site itself
-- (replication.sites) carry no tenant_id: a provider site serves every
-- tenant at once, so its cursor and session belong to no tenant. They are
-- visible to system-scoped transactions only.
--
-- Pod revisions are per vK8s: `pod_heads.revision` is advanced inside the
-- writing transaction while its row is locked, so writers of one vK8s commit
-- in revision order and a watcher that reads revision N has seen everything
-- below it. Deleted pods stay as tombstones (deleted = true) for a while so
-- watchers see the deletion; `pod_heads.compacted` is the newest revision
-- whose tombstones were purged. Every pod write calls
-- pg_notify('replication_pods', <vK8s name>) in its transaction.

CREATE SCHEMA replication;
GRANT USAGE ON SCHEMA replication TO manifold_app;

-- True in system-scoped transactions only.
CREATE FUNCTION replication.system_scope() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce(current_setting('manifold.tenant', true), '') = '*'
$$;
GRANT EXECUTE ON FUNCTION replication.system_scope() TO manifold_app;

-- One row per site that ever connected (site ids are global, see sites.sites).
CREATE TABLE replication.sites (
    site                text PRIMARY KEY,
    -- The site's cursor: everything up to it is applied on the site.
    acked_revision      bigint NOT NULL DEFAULT 0,
    -- The placement (vK8s → virtual sites containing the site) the cursor
    -- was reached under; a different placement at reconnect means a snapshot.
    placement           jsonb,
    -- The live (or last) stream: which replica holds it.
    session_id          uuid,
    replica             text,
    -- Where that replica's gRPC API is reachable (log streams are forwarded
    -- there), when it advertised one.
    replica_url         text,
    connected           boolean NOT NULL DEFAULT false,
    connect_time        timestamptz,
    disconnect_time     timestamptz,
    -- Refreshed by the replica holding the stream; stale means the replica died.
    last_seen_time      timestamptz,
    last_heartbeat_time timestamptz,
    agent_version       text NOT NULL DEFAULT '',
    nodes               jsonb NOT NULL DEFAULT '[]'::jsonb,
    -- Unacknowledged messages in flight (as of the last refresh).
    in_flight           bigint NOT NULL DEFAULT 0,
    -- Reported OFFLINE to the site registry after the heartbeat timeout.
    offline             boolean NOT NULL DEFAULT false
);

CREATE TABLE replication.object_status (
    tenant_id         uuid NOT NULL,
    virtual_cluster   text NOT NULL,
    api_group         text NOT NULL,
    kind              text NOT NULL,
    namespace         text NOT NULL,
    name              text NOT NULL,
    site              text NOT NULL,
    api_version       text NOT NULL,
    -- The object's .status on the site.
    status            jsonb NOT NULL,
    observed_revision bigint NOT NULL,
    update_time       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (virtual_cluster, api_group, kind, namespace, name, site)
);
CREATE INDEX object_status_site ON replication.object_status (site);

CREATE TABLE replication.pod_heads (
    tenant_id       uuid NOT NULL,
    virtual_cluster text PRIMARY KEY,
    revision        bigint NOT NULL DEFAULT 0,
    compacted       bigint NOT NULL DEFAULT 0
);

CREATE TABLE replication.pods (
    tenant_id       uuid NOT NULL,
    virtual_cluster text NOT NULL,
    -- The Manifold namespace and the physical pod name.
    namespace       text NOT NULL,
    name            text NOT NULL,
    site            text NOT NULL,
    node            text NOT NULL DEFAULT '',
    phase           text NOT NULL DEFAULT '',
    pod_ip          text NOT NULL DEFAULT '',
    restarts        integer NOT NULL DEFAULT 0,
    owner_kind      text NOT NULL DEFAULT '',
    owner_name      text NOT NULL DEFAULT '',
    -- The full Pod in virtual terms, as the agent reported it.
    object          jsonb NOT NULL,
    conditions      jsonb GENERATED ALWAYS AS (object -> 'status' -> 'conditions') STORED,
    -- The site's stream is gone: this state may be stale.
    site_offline    boolean NOT NULL DEFAULT false,
    revision        bigint NOT NULL,
    deleted         boolean NOT NULL DEFAULT false,
    update_time     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (virtual_cluster, namespace, name, site)
);
CREATE INDEX pods_by_revision ON replication.pods (virtual_cluster, revision);
CREATE INDEX pods_by_site ON replication.pods (site);
CREATE INDEX pods_tombstones ON replication.pods (update_time) WHERE deleted;

-- Kubernetes Events reported by sites, kept for a while (an hour by default).
CREATE TABLE replication.events (
    tenant_id       uuid NOT NULL,
    virtual_cluster text NOT NULL,
    namespace       text NOT NULL,
    name            text NOT NULL,
    site            text NOT NULL,
    object          jsonb NOT NULL,
    update_time     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (virtual_cluster, namespace, name, site)
);
CREATE INDEX events_by_time ON replication.events (update_time);

GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA replication TO manifold_app;

ALTER TABLE replication.sites ENABLE ROW LEVEL SECURITY;
ALTER TABLE replication.sites FORCE ROW LEVEL SECURITY;
CREATE POLICY system_only ON replication.sites
    USING (replication.system_scope()) WITH CHECK (replication.system_scope());

ALTER TABLE replication.object_status ENABLE ROW LEVEL SECURITY;
ALTER TABLE replication.object_status FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON replication.object_status
    USING (tenancy.tenant_visible(tenant_id)) WITH CHECK (tenancy.tenant_visible(tenant_id));

ALTER TABLE replication.pod_heads ENABLE ROW LEVEL SECURITY;
ALTER TABLE replication.pod_heads FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON replication.pod_heads
    USING (tenancy.tenant_visible(tenant_id)) WITH CHECK (tenancy.tenant_visible(tenant_id));

ALTER TABLE replication.events ENABLE ROW LEVEL SECURITY;
ALTER TABLE replication.events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON replication.events
    USING (tenancy.tenant_visible(tenant_id)) WITH CHECK (tenancy.tenant_visible(tenant_id));

ALTER TABLE replication.pods ENABLE ROW LEVEL SECURITY;
ALTER TABLE replication.pods FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON replication.pods
    USING (tenancy.tenant_visible(tenant_id)) WITH CHECK (tenancy.tenant_visible(tenant_id));
