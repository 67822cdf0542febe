-- The Pod Security Standard (Kubernetes' privileged / baseline / restricted)
-- every workload placed on a site must meet. The gateway refuses workloads
-- that violate the strictest level of the sites a vK8s is placed on, and the
-- site agent labels the site's namespaces with it. Existing sites (provider
-- and tenant-owned) start at baseline, the documented default.
ALTER TABLE sites.sites ADD COLUMN pod_security text NOT NULL DEFAULT 'baseline'
    CHECK (pod_security IN ('privileged', 'baseline', 'restricted'));
