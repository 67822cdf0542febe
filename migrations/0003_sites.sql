-- Site registry: physical sites, virtual sites (label selectors over sites),
-- one-time registration tokens and the certificates issued to site agents.
--
-- Isolation: tenant-owned rows carry tenant_id and follow the same row-level
-- security as the tenancy schema. Provider-owned sites (tenant_id NULL) are
-- shared by every tenant by design: any transaction that names a scope may
-- read them, but only system-scoped transactions may write them. Tokens and
-- certificates of provider sites (tenant_id NULL) are system-only.
--
-- Every write that can change a placement bumps the single-row counter
-- `sites.revision` and calls pg_notify('sites_changed', ...) in the same
-- transaction; watchers on every replica listen on that channel.

CREATE SCHEMA sites;
GRANT USAGE ON SCHEMA sites TO manifold_app;

-- True when the current transaction may read a site row owned by `t`
-- (NULL: provider-owned, readable in any named scope).
CREATE FUNCTION sites.site_readable(t uuid) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT tenancy.tenant_visible(t)
        OR (t IS NULL AND coalesce(current_setting('manifold.tenant', true), '') <> '')
$$;
GRANT EXECUTE ON FUNCTION sites.site_readable(uuid) TO manifold_app;

-- The registry revision: orders placement events across replicas.
CREATE TABLE sites.revision (
    id    boolean PRIMARY KEY DEFAULT true CHECK (id),
    value bigint NOT NULL
);
INSERT INTO sites.revision (id, value) VALUES (true, 0);

CREATE TABLE sites.sites (
    id                  uuid PRIMARY KEY,
    -- NULL: provider-owned.
    tenant_id           uuid,
    -- The owning tenant's name (`acme`), NULL for provider sites.
    owner_tenant        text,
    name                text NOT NULL UNIQUE,
    display_name        text NOT NULL DEFAULT '',
    location            text NOT NULL DEFAULT '',
    provider_kind       text NOT NULL DEFAULT 'unspecified'
        CHECK (provider_kind IN ('unspecified', 'cloud-region', 'pop', 'edge')),
    labels              jsonb NOT NULL DEFAULT '{}'::jsonb,
    state               text NOT NULL DEFAULT 'registered'
        CHECK (state IN ('registered', 'online', 'offline', 'decommissioned')),
    agent_version       text NOT NULL DEFAULT '',
    nodes               jsonb NOT NULL DEFAULT '[]'::jsonb,
    last_heartbeat_time timestamptz,
    register_time       timestamptz,
    decommission_time   timestamptz,
    version             bigint NOT NULL DEFAULT 1,
    create_time         timestamptz NOT NULL DEFAULT now(),
    update_time         timestamptz NOT NULL DEFAULT now(),
    CHECK ((tenant_id IS NULL) = (owner_tenant IS NULL))
);
CREATE INDEX sites_tenant ON sites.sites (tenant_id);

CREATE TABLE sites.registration_tokens (
    -- Public half of the token; the lookup key.
    token_id    text PRIMARY KEY,
    site_id     uuid NOT NULL REFERENCES sites.sites (id) ON DELETE CASCADE,
    tenant_id   uuid,
    -- SHA-256 of the secret half. The secret itself is never stored.
    secret_hash bytea NOT NULL,
    created_by  text NOT NULL DEFAULT '',
    create_time timestamptz NOT NULL DEFAULT now(),
    expire_time timestamptz NOT NULL,
    -- Set when an agent registered with it: a token works once.
    use_time    timestamptz
);
CREATE INDEX registration_tokens_site ON sites.registration_tokens (site_id);

CREATE TABLE sites.issued_certs (
    -- Hex of the certificate serial number.
    serial          text PRIMARY KEY,
    site_id         uuid NOT NULL REFERENCES sites.sites (id) ON DELETE CASCADE,
    tenant_id       uuid,
    certificate_pem text NOT NULL,
    reason          text NOT NULL CHECK (reason IN ('registration', 'renewal')),
    issue_time      timestamptz NOT NULL DEFAULT now(),
    not_after       timestamptz NOT NULL,
    revoke_time     timestamptz
);
CREATE INDEX issued_certs_site ON sites.issued_certs (site_id);

CREATE TABLE sites.virtual_sites (
    id            uuid PRIMARY KEY,
    tenant_id     uuid NOT NULL,
    -- Names as in the resource name (`acme`, `shop`, `all-edges`).
    tenant        text NOT NULL,
    namespace     text NOT NULL,
    name          text NOT NULL,
    display_name  text NOT NULL DEFAULT '',
    site_selector text NOT NULL,
    version       bigint NOT NULL DEFAULT 1,
    create_time   timestamptz NOT NULL DEFAULT now(),
    update_time   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, namespace, name)
);

GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA sites TO manifold_app;

ALTER TABLE sites.sites ENABLE ROW LEVEL SECURITY;
ALTER TABLE sites.sites FORCE ROW LEVEL SECURITY;
-- Permissive policies are OR-ed per command: reads see provider rows too,
-- writes only rows of the transaction's tenant (all of them in system scope).
CREATE POLICY site_read ON sites.sites FOR SELECT
    USING (sites.site_readable(tenant_id));
CREATE POLICY tenant_isolation ON sites.sites
    USING (tenancy.tenant_visible(tenant_id)) WITH CHECK (tenancy.tenant_visible(tenant_id));

ALTER TABLE sites.registration_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE sites.registration_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sites.registration_tokens
    USING (tenancy.tenant_visible(tenant_id)) WITH CHECK (tenancy.tenant_visible(tenant_id));

ALTER TABLE sites.issued_certs ENABLE ROW LEVEL SECURITY;
ALTER TABLE sites.issued_certs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sites.issued_certs
    USING (tenancy.tenant_visible(tenant_id)) WITH CHECK (tenancy.tenant_visible(tenant_id));

ALTER TABLE sites.virtual_sites ENABLE ROW LEVEL SECURITY;
ALTER TABLE sites.virtual_sites FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sites.virtual_sites
    USING (tenancy.tenant_visible(tenant_id)) WITH CHECK (tenancy.tenant_visible(tenant_id));
