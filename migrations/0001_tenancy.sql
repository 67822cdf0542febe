-- Tenancy: tenants, namespaces, users, role bindings, API tokens.
--
-- Every tenant-owned row carries tenant_id, and row-level security limits a
-- transaction to the tenant named in the `manifold.tenant` setting ('*' for
-- system-level work). Pooled connections run as manifold_app, which is neither
-- a superuser nor the owner, so the policies always apply to it.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'manifold_app') THEN
        CREATE ROLE manifold_app NOLOGIN;
    END IF;
EXCEPTION
    -- Two databases of one server migrated at once: the other created it.
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

DO $$
BEGIN
    EXECUTE format('GRANT manifold_app TO %I', current_user);
EXCEPTION
    WHEN duplicate_object OR unique_violation OR insufficient_privilege OR invalid_grant_operation THEN NULL;
END
$$;

CREATE SCHEMA tenancy;
GRANT USAGE ON SCHEMA tenancy TO manifold_app;

-- True when the current transaction may see rows of tenant `t`.
CREATE FUNCTION tenancy.tenant_visible(t uuid) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce(current_setting('manifold.tenant', true), '') = '*'
        OR (t IS NOT NULL AND t::text = current_setting('manifold.tenant', true))
$$;
GRANT EXECUTE ON FUNCTION tenancy.tenant_visible(uuid) TO manifold_app;

CREATE TABLE tenancy.tenants (
    id           uuid PRIMARY KEY,
    name         text NOT NULL UNIQUE,
    display_name text NOT NULL DEFAULT '',
    labels       jsonb NOT NULL DEFAULT '{}'::jsonb,
    state        text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'suspended')),
    version      bigint NOT NULL DEFAULT 1,
    create_time  timestamptz NOT NULL DEFAULT now(),
    update_time  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tenancy.namespaces (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenancy.tenants (id) ON DELETE CASCADE,
    name         text NOT NULL,
    display_name text NOT NULL DEFAULT '',
    labels       jsonb NOT NULL DEFAULT '{}'::jsonb,
    version      bigint NOT NULL DEFAULT 1,
    create_time  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name)
);

-- tenant_id NULL: a system user (operators).
CREATE TABLE tenancy.users (
    id           uuid PRIMARY KEY,
    tenant_id    uuid REFERENCES tenancy.tenants (id) ON DELETE CASCADE,
    name         text NOT NULL,
    display_name text NOT NULL DEFAULT '',
    email        text NOT NULL DEFAULT '',
    version      bigint NOT NULL DEFAULT 1,
    create_time  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_tenant_name
    ON tenancy.users (coalesce(tenant_id, '00000000-0000-0000-0000-000000000000'::uuid), name);

CREATE TABLE tenancy.role_bindings (
    id           uuid PRIMARY KEY,
    tenant_id    uuid REFERENCES tenancy.tenants (id) ON DELETE CASCADE,
    namespace_id uuid REFERENCES tenancy.namespaces (id) ON DELETE CASCADE,
    -- '' (system), 'tenants/t' or 'tenants/t/namespaces/n'.
    scope        text NOT NULL,
    binding_id   text NOT NULL,
    role         text NOT NULL CHECK (role IN ('system-admin', 'tenant-admin', 'admin', 'editor', 'viewer')),
    user_id      uuid NOT NULL REFERENCES tenancy.users (id) ON DELETE CASCADE,
    create_time  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (scope, binding_id),
    UNIQUE (scope, role, user_id)
);
CREATE INDEX role_bindings_user ON tenancy.role_bindings (user_id);

CREATE TABLE tenancy.api_tokens (
    id           uuid PRIMARY KEY,
    tenant_id    uuid REFERENCES tenancy.tenants (id) ON DELETE CASCADE,
    user_id      uuid NOT NULL REFERENCES tenancy.users (id) ON DELETE CASCADE,
    -- Public half of the bearer secret; the lookup key.
    token_id     text NOT NULL UNIQUE,
    -- SHA-256 of the secret half. The secret itself is never stored.
    secret_hash  bytea NOT NULL,
    display_name text NOT NULL DEFAULT '',
    scope        text NOT NULL DEFAULT '',
    create_time  timestamptz NOT NULL DEFAULT now(),
    expire_time  timestamptz NOT NULL,
    revoke_time  timestamptz
);
CREATE INDEX api_tokens_user ON tenancy.api_tokens (user_id);

GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA tenancy TO manifold_app;

ALTER TABLE tenancy.tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenancy.tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenancy.tenants
    USING (tenancy.tenant_visible(id)) WITH CHECK (tenancy.tenant_visible(id));

ALTER TABLE tenancy.namespaces ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenancy.namespaces FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenancy.namespaces
    USING (tenancy.tenant_visible(tenant_id)) WITH CHECK (tenancy.tenant_visible(tenant_id));

ALTER TABLE tenancy.users ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenancy.users FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenancy.users
    USING (tenancy.tenant_visible(tenant_id)) WITH CHECK (tenancy.tenant_visible(tenant_id));

ALTER TABLE tenancy.role_bindings ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenancy.role_bindings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenancy.role_bindings
    USING (tenancy.tenant_visible(tenant_id)) WITH CHECK (tenancy.tenant_visible(tenant_id));

ALTER TABLE tenancy.api_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenancy.api_tokens FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenancy.api_tokens
    USING (tenancy.tenant_visible(tenant_id)) WITH CHECK (tenancy.tenant_visible(tenant_id));
