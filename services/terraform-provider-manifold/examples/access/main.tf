# Give a person access to one namespace: a tenant user, a NAMESPACE_EDITOR
# binding and an API token limited to the namespace (e.g. for CI).
terraform {
  required_providers {
    manifold = {
      source = "manifold.dev/manifold/manifold"
    }
  }
}

provider "manifold" {}

variable "tenant" {
  default = "tenants/acme"
}

variable "namespace" {
  default = "tenants/acme/namespaces/shop"
}

resource "manifold_user" "alice" {
  parent  = var.tenant
  user_id = "alice"
  email   = "alice@example.com"
}

resource "manifold_role_binding" "alice_editor" {
  parent = var.namespace
  role   = "NAMESPACE_EDITOR"
  user   = manifold_user.alice.name
}

resource "manifold_api_token" "alice_ci" {
  parent       = manifold_user.alice.name
  display_name = "ci"
  scope        = var.namespace
  ttl_seconds  = 30 * 86400
}

output "ci_token" {
  value     = manifold_api_token.alice_ci.secret
  sensitive = true
}
