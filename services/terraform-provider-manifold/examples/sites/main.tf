# Provider sites (system-admin), each with a one-time registration token for
# its agent, and the sites a selector matches.
#
#   terraform apply
#   terraform output -json registration_tokens   # hand each to its site agent
terraform {
  required_providers {
    manifold = {
      source = "manifold.dev/manifold/manifold"
    }
  }
}

provider "manifold" {}

locals {
  edges = {
    "fra1-fra" = "Frankfurt"
    "lon2-lon" = "London"
    "sin3-sin" = "Singapore"
  }
}

resource "manifold_site" "edge" {
  for_each      = local.edges
  site_id       = each.key
  location      = each.value
  provider_kind = "EDGE"
  labels        = { env = "edge" }

  registration_token_ttl_seconds = 7200
}

data "manifold_sites" "edge" {
  label_selector = "env=edge"
  depends_on     = [manifold_site.edge]
}

output "edge_sites" {
  value = data.manifold_sites.edge.names
}

output "registration_tokens" {
  value     = { for id, s in manifold_site.edge : id => s.registration_token }
  sensitive = true
}
