//! Names and identifiers the simulated cluster makes up the way Kubernetes does:
//! pod-template hashes, random name suffixes, UIDs, cluster IPs.

use rand::Rng;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Kubernetes' `rand.SafeEncodeString` alphabet (no vowels, no confusable digits).
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// FNV-1a, 32 bits: what the ReplicaSet controller hashes pod templates with.
fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// JSON with object keys sorted, so equal templates hash equally whatever the key
/// order they arrived in.
fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The `pod-template-hash` of a pod template, in the form Kubernetes shows it
/// (`7c5ddbdf54`): the decimal FNV hash, each digit mapped into the safe alphabet.
pub(super) fn template_hash(template: &Value) -> String {
    let mut s = String::new();
    canonical(template, &mut s);
    fnv1a32(s.as_bytes())
        .to_string()
        .bytes()
        .map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char)
        .collect()
}

/// `n` random characters of the safe alphabet (pod name suffixes).
pub(super) fn random_suffix(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn format_uid(b: &[u8]) -> String {
    let h = hex::encode(&b[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A random UID in Kubernetes' (UUID) format.
pub(super) fn uid() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    format_uid(&b)
}

/// A stable UID derived from another (a ReplicaSet's, from its Deployment's and hash).
pub(super) fn derived_uid(base: &str, salt: &str) -> String {
    let digest = Sha256::digest(format!("{base}/{salt}").as_bytes());
    format_uid(&digest)
}

/// A fake, stable service IP in 10.96.0.0/12.
pub(super) fn cluster_ip(seed: &str) -> String {
    let d = Sha256::digest(seed.as_bytes());
    format!("10.{}.{}.{}", 96 + (d[0] % 16), d[1], d[2].max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn template_hash_is_stable_and_key_order_free() {
        let a = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}});
        let b: Value = serde_json::from_str(
            r#"{"spec": {"containers": [{"image": "nginx:1", "name": "c"}]}, "metadata": {"labels": {"app": "web"}}}"#,
        )
        .unwrap();
        assert_eq!(template_hash(&a), template_hash(&b));
        let c = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx:2"}]}});
        assert_ne!(template_hash(&a), template_hash(&c));
        assert!(template_hash(&a).bytes().all(|b| ALPHABET.contains(&b)));
    }

    #[test]
    fn identifiers_look_like_kubernetes_ones() {
        assert_eq!(random_suffix(5).len(), 5);
        let u = uid();
        assert_eq!(u.len(), 36);
        assert_eq!(derived_uid("x", "y"), derived_uid("x", "y"));
        assert!(cluster_ip("svc").starts_with("10."));
    }
}
