-- Audit log: one row per mutating call (gRPC or Kubernetes API), written in
-- batches by every control-plane process and read through AuditService.
--
-- Rows are keyed by tenant *name* (NULL: a system-level event), because the
-- recording layer runs in every process and must not ask tenancy for a uid on
-- the request path. Row-level security:
--   * system scope (`manifold.tenant` = '*', manifold_db::Scope::System) sees
--     and writes every row;
--   * `manifold.audit_tenant` = a tenant name sees that tenant's rows only;
--   * anything else sees nothing.
-- manifold_app may insert and read but never update or delete: the log is
-- append-only for the application.

CREATE SCHEMA audit;
GRANT USAGE ON SCHEMA audit TO manifold_app;

CREATE TABLE audit.events (
    -- UUIDv7: ordered by time.
    id          uuid PRIMARY KEY,
    time        timestamptz NOT NULL,
    tenant      text,
    actor       text NOT NULL DEFAULT '',
    actor_kind  text NOT NULL CHECK (actor_kind IN ('user', 'site', 'anonymous')),
    source      text NOT NULL CHECK (source IN ('grpc', 'kubernetes')),
    -- gRPC: `pkg.Service/Method`; Kubernetes: the verb.
    method      text NOT NULL,
    resource    text NOT NULL DEFAULT '',
    http_method text NOT NULL DEFAULT '',
    path        text NOT NULL DEFAULT '',
    -- gRPC status code name or HTTP status.
    code        text NOT NULL,
    success     boolean NOT NULL,
    message     text NOT NULL DEFAULT '',
    request_id  text NOT NULL DEFAULT '',
    trace_id    text NOT NULL DEFAULT ''
);
CREATE INDEX events_tenant_time ON audit.events (tenant, time DESC, id DESC);
CREATE INDEX events_time ON audit.events (time DESC, id DESC);

GRANT SELECT, INSERT ON audit.events TO manifold_app;

ALTER TABLE audit.events ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit.events FORCE ROW LEVEL SECURITY;
CREATE POLICY audit_read ON audit.events FOR SELECT
    USING (
        coalesce(current_setting('manifold.tenant', true), '') = '*'
        OR (tenant IS NOT NULL AND tenant = current_setting('manifold.audit_tenant', true))
    );
CREATE POLICY audit_write ON audit.events FOR INSERT
    WITH CHECK (coalesce(current_setting('manifold.tenant', true), '') = '*');
