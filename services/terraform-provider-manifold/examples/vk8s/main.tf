# A tenant, a namespace, a virtual site over every `env=edge` site, and a
# virtual Kubernetes cluster placed on it; the kubeconfig comes out as a
# sensitive output:
#
#   terraform apply
#   terraform output -raw kubeconfig > demo.kubeconfig
#   KUBECONFIG=demo.kubeconfig kubectl create deployment web --image=nginx:1.27 --replicas=2
#
# Every plan, refresh and apply reads the data source again, which mints a new
# token: the kubeconfig output changes each time (`terraform plan` shows
# "Changes to Outputs") and old tokens stay valid until they expire. Hence the
# short ttl_seconds.
terraform {
  required_providers {
    manifold = {
      source = "manifold.dev/manifold/manifold"
    }
  }
}

# endpoint, ca_file and token default to $MANIFOLD_ENDPOINT, $MANIFOLD_CA_FILE
# and $MANIFOLD_TOKEN (a system-admin token: it creates a tenant).
provider "manifold" {
  timeout = "30s"
}

resource "manifold_tenant" "globex" {
  tenant_id    = "globex"
  display_name = "Globex"
  labels       = { tier = "gold" }
}

resource "manifold_namespace" "web" {
  parent       = manifold_tenant.globex.name
  namespace_id = "web"
}

resource "manifold_virtual_site" "edges" {
  parent          = manifold_namespace.web.name
  virtual_site_id = "all-edges"
  site_selector   = "env=edge"
}

resource "manifold_virtual_k8s" "demo" {
  parent         = manifold_namespace.web.name
  virtual_k8s_id = "demo"
  display_name   = "Demo"
  virtual_sites  = [manifold_virtual_site.edges.name]
}

data "manifold_kubeconfig" "demo" {
  virtual_k8s = manifold_virtual_k8s.demo.name
  ttl_seconds = 3600 # every read mints a token; keep its lifetime short
}

output "server_url" {
  value = manifold_virtual_k8s.demo.server_url
}

output "kubeconfig" {
  value     = data.manifold_kubeconfig.demo.kubeconfig
  sensitive = true
}
