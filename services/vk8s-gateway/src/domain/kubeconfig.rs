//! The kubeconfig handed to users: one cluster (the vK8s URL and the CA
//! bundle), one user (a bearer token), one context whose namespace is the
//! Manifold namespace.

use base64::Engine;
use serde_json::json;

use super::names::ClusterName;

/// Renders a kubeconfig as YAML.
pub fn render(
    cluster: &ClusterName,
    public_url: &str,
    ca_pem: &str,
    user: &str,
    token: &str,
) -> String {
    let context = format!("{}-{}-{}", cluster.tenant, cluster.namespace, cluster.name);
    // `users/x` or `tenants/t/users/x`: the short user id names the entry.
    let user_id = user.rsplit('/').next().unwrap_or(user);
    let user_entry = format!("{user_id}@{context}");
    let server = format!(
        "{}{}",
        public_url.trim_end_matches('/'),
        cluster.kube_path()
    );
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem.as_bytes());
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{
            "name": context,
            "cluster": { "server": server, "certificate-authority-data": ca },
        }],
        "users": [{ "name": user_entry, "user": { "token": token } }],
        "contexts": [{
            "name": context,
            "context": { "cluster": context, "user": user_entry, "namespace": cluster.namespace },
        }],
        "current-context": context,
    });
    // A `Value` of strings, arrays and objects always serialises.
    serde_yaml_ng::to_string(&config).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_points_at_the_cluster() {
        let name = ClusterName {
            tenant: "acme".into(),
            namespace: "shop".into(),
            name: "demo".into(),
        };
        let yaml = render(
            &name,
            "https://127.0.0.1:6443/",
            "PEM",
            "tenants/acme/users/ann",
            "tok",
        );
        let v: serde_json::Value = serde_yaml_ng::from_str(&yaml).unwrap();
        assert_eq!(
            v["clusters"][0]["cluster"]["server"],
            "https://127.0.0.1:6443/vk8s/acme/shop/demo"
        );
        assert_eq!(v["contexts"][0]["context"]["namespace"], "shop");
        assert_eq!(v["users"][0]["user"]["token"], "tok");
        assert_eq!(v["current-context"], "acme-shop-demo");
    }
}
