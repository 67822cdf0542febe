-- Tenant and namespace deletion: the cascade into the other services' schemas.
--
-- Deleting a tenant (or a namespace) in tenancy writes one row here in the
-- same transaction. Every service that owns data of tenants polls this table
-- and purges its own schema in the background, then sets its `*_done_time`:
--   gateway      deletes the virtual clusters and their objects through the
--                change log (DELETED changes), so replication sends Deletes
--                to every site;
--   sites        deletes the virtual sites and decommissions the tenant's own
--                sites (certificates revoked), once the gateway is done;
--   replication  drops observed state (object status, pods, events), a few
--                seconds after the gateway is done (placement has moved on);
--   audit        records the tenant name's deletion time: a tenant later
--                created under the same name does not see older events.
-- Each cleaner takes a transaction-level advisory lock per pass, so one
-- replica works at a time; a pass is one transaction, so a crash repeats it.
-- Rows are kept as the record of what was deleted when.

CREATE TABLE tenancy.deletions (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The deleted tenant's uid (other schemas key rows by it) and name.
    tenant_id              uuid NOT NULL,
    tenant                 text NOT NULL,
    -- NULL: the whole tenant; else only this namespace of it.
    namespace              text,
    delete_time            timestamptz NOT NULL DEFAULT now(),
    gateway_done_time      timestamptz,
    sites_done_time        timestamptz,
    replication_done_time  timestamptz,
    audit_done_time        timestamptz
);
CREATE INDEX deletions_pending ON tenancy.deletions (id)
    WHERE gateway_done_time IS NULL OR sites_done_time IS NULL
       OR replication_done_time IS NULL OR audit_done_time IS NULL;

GRANT SELECT, INSERT ON tenancy.deletions TO manifold_app;
GRANT UPDATE (gateway_done_time, sites_done_time, replication_done_time, audit_done_time)
    ON tenancy.deletions TO manifold_app;

ALTER TABLE tenancy.deletions ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenancy.deletions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenancy.deletions
    USING (tenancy.tenant_visible(tenant_id)) WITH CHECK (tenancy.tenant_visible(tenant_id));

-- Audit rows carry the tenant *name*. A tenant deleted at T hides every
-- event of that name up to T from tenant-scoped reads (`tenants/{t}`); the
-- events stay, readable in system scope (`tenants/-`, operators).
CREATE TABLE audit.tenant_deletions (
    tenant      text NOT NULL,
    delete_time timestamptz NOT NULL,
    PRIMARY KEY (tenant, delete_time)
);
GRANT SELECT, INSERT ON audit.tenant_deletions TO manifold_app;
