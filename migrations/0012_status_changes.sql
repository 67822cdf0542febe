-- Pushing workload status to watchers instead of polling it: every change
-- of a site's status of an object (and every time the site goes offline or
-- comes back) takes the next number of a sequence, so a reader woken by
-- NOTIFY reads exactly the objects whose status changed since its last read.
-- `change_time` lets it look a little back as well, for a change whose
-- transaction committed after a later-numbered one.
CREATE SEQUENCE replication.status_change;
GRANT USAGE, SELECT ON SEQUENCE replication.status_change TO manifold_app;
ALTER TABLE replication.object_status
    ADD COLUMN changed bigint NOT NULL DEFAULT nextval('replication.status_change'),
    ADD COLUMN change_time timestamptz NOT NULL DEFAULT now();
CREATE INDEX object_status_changed ON replication.object_status (virtual_cluster, changed);
CREATE INDEX object_status_change_time ON replication.object_status (virtual_cluster, change_time);
