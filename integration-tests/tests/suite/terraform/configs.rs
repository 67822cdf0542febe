//! The Terraform configurations the tests apply.

/// Provider source address the CLI config overrides.
pub(super) const SOURCE: &str = "manifold.dev/manifold/manifold";

/// `$body` after the `terraform` block and an empty provider block (endpoint,
/// CA bundle and token come from MANIFOLD_ENDPOINT, MANIFOLD_CA_FILE and
/// MANIFOLD_TOKEN).
macro_rules! with_header {
    ($body:expr) => {
        concat!(
            r#"
terraform {
  required_providers {
    manifold = {
      source = "manifold.dev/manifold/manifold"
    }
  }
}

provider "manifold" {}
"#,
            $body
        )
    };
}

pub(super) const V1: &str = with_header!(
    r#"
resource "manifold_tenant" "acme" {
  tenant_id    = "acme"
  display_name = "Acme"
  labels       = { tier = "gold" }
}

resource "manifold_namespace" "shop" {
  parent       = manifold_tenant.acme.name
  namespace_id = "shop"
}

resource "manifold_site" "par" {
  site_id       = "pa2-par"
  location      = "Paris"
  provider_kind = "EDGE"
  labels        = { env = "edge" }
}

resource "manifold_virtual_site" "edges" {
  parent          = manifold_namespace.shop.name
  virtual_site_id = "all-edges"
  site_selector   = "env=edge"
}

resource "manifold_virtual_k8s" "demo" {
  parent         = manifold_namespace.shop.name
  virtual_k8s_id = "demo"
  display_name   = "Demo"
  virtual_sites  = [manifold_virtual_site.edges.name]
}

resource "manifold_user" "ann" {
  parent  = manifold_tenant.acme.name
  user_id = "ann"
  email   = "ann@example.com"
}

resource "manifold_role_binding" "ann" {
  parent = manifold_namespace.shop.name
  role   = "NAMESPACE_EDITOR"
  user   = manifold_user.ann.name
}

resource "manifold_api_token" "ci" {
  parent       = manifold_user.ann.name
  display_name = "ci"
  scope        = manifold_namespace.shop.name
  ttl_seconds  = 3600
}

data "manifold_kubeconfig" "demo" {
  virtual_k8s = manifold_virtual_k8s.demo.name
}

data "manifold_sites" "edge" {
  label_selector = "env=edge"
  depends_on     = [manifold_site.par]
}

data "manifold_site" "par" {
  site_id    = "pa2-par"
  depends_on = [manifold_site.par]
}

output "edge_sites" {
  value = data.manifold_sites.edge.names
}

output "par_location" {
  value = data.manifold_site.par.location
}
"#
);

/// V1 with in-place changes (namespace, vK8s, virtual site, site) and a replacement
/// (the API token's display name cannot change).
pub(super) const V2: &str = with_header!(
    r#"
resource "manifold_tenant" "acme" {
  tenant_id    = "acme"
  display_name = "Acme"
  labels       = { tier = "gold" }
}

resource "manifold_namespace" "shop" {
  parent       = manifold_tenant.acme.name
  namespace_id = "shop"
  display_name = "Shop"
}

resource "manifold_site" "par" {
  site_id       = "pa2-par"
  location      = "Paris 2"
  provider_kind = "EDGE"
  labels        = { env = "edge" }
  pod_security  = "RESTRICTED"
}

resource "manifold_virtual_site" "edges" {
  parent          = manifold_namespace.shop.name
  virtual_site_id = "all-edges"
  site_selector   = "env=edge,tier!=test"
}

resource "manifold_virtual_k8s" "demo" {
  parent         = manifold_namespace.shop.name
  virtual_k8s_id = "demo"
  display_name   = "Demo v2"
  labels         = { team = "web" }
  virtual_sites  = [manifold_virtual_site.edges.name]
}

resource "manifold_user" "ann" {
  parent  = manifold_tenant.acme.name
  user_id = "ann"
  email   = "ann@example.com"
}

resource "manifold_role_binding" "ann" {
  parent = manifold_namespace.shop.name
  role   = "NAMESPACE_EDITOR"
  user   = manifold_user.ann.name
}

resource "manifold_api_token" "ci" {
  parent       = manifold_user.ann.name
  display_name = "ci-v2"
  scope        = manifold_namespace.shop.name
  ttl_seconds  = 3600
}

data "manifold_kubeconfig" "demo" {
  virtual_k8s = manifold_virtual_k8s.demo.name
}

data "manifold_sites" "edge" {
  label_selector = "env=edge"
  depends_on     = [manifold_site.par]
}

data "manifold_site" "par" {
  site_id    = "pa2-par"
  depends_on = [manifold_site.par]
}

output "edge_sites" {
  value = data.manifold_sites.edge.names
}

output "par_location" {
  value = data.manifold_site.par.location
}
"#
);

pub(super) const INVALID_ID: &str = with_header!(
    r#"
resource "manifold_tenant" "bad" {
  tenant_id = "Bad_Tenant"
}
"#
);

pub(super) const INVALID_ENUM: &str = with_header!(
    r#"
resource "manifold_role_binding" "bad" {
  parent = "tenants/acme"
  role   = "OWNER"
  user   = "users/admin"
}
"#
);

pub(super) const MISSING_ATTRIBUTE: &str = with_header!(
    r#"
resource "manifold_virtual_site" "bad" {
  parent          = "tenants/acme/namespaces/shop"
  virtual_site_id = "edges"
}
"#
);

pub(super) const API_ERROR: &str = with_header!(
    r#"
resource "manifold_namespace" "orphan" {
  parent       = "tenants/nope"
  namespace_id = "shop"
}
"#
);

/// A site whose registration token the server refuses (more than the 7-day
/// maximum): CreateSite succeeds, CreateRegistrationToken fails. The id has
/// dots and starts with a digit, which the server's rule allows.
pub(super) const SITE_TOKEN_FAILS: &str = with_header!(
    r#"
resource "manifold_site" "ny" {
  site_id                        = "1.ny.edge"
  labels                         = {}
  registration_token_ttl_seconds = 604801
}
"#
);

pub(super) const INVALID_SITE_ID: &str = with_header!(
    r#"
resource "manifold_site" "bad" {
  site_id = "edge.ny."
}
"#
);

pub(super) const SITES_QUERY: &str = with_header!(
    r#"
data "manifold_sites" "all" {}
"#
);

pub(super) const BAD_TIMEOUT: &str = r#"
terraform {
  required_providers {
    manifold = {
      source = "manifold.dev/manifold/manifold"
    }
  }
}

provider "manifold" {
  timeout = "soon"
}

resource "manifold_tenant" "t" {
  tenant_id = "t"
}
"#;

pub(super) const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: productpage
spec:
  replicas: 2
  selector:
    matchLabels:
      app: productpage
  template:
    metadata:
      labels:
        app: productpage
    spec:
      containers:
      - name: productpage
        image: nginx:1.27
";
