//! Property-based fuzzing (proptest) of the Kubernetes API's body decoders
//! (JSON, YAML with aliases, `k8s\0` protobuf) and of the agent stream's
//! messages (prost decode of `manifold.replication.v1`): no panic, and no
//! decode ever builds more than its budget (no unbounded allocation). The
//! patch engines and selector parsers are fuzzed in `manifold-kube-model`.
//!
//! `MANIFOLD_FUZZ_CASES` cases per property (default [`DEFAULT_CASES`]).

use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use manifold_proto::replication::v1 as rpb;
use proptest::prelude::*;
use prost::Message;

use super::negotiate::{decode_body, decode_json, decode_yaml};
use super::{protobuf, yaml};
use crate::error::GatewayError;

pub const DEFAULT_CASES: u32 = 64;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("MANIFOLD_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_CASES),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// YAML-ish text: anchors, aliases, flow and block collections.
fn yaml_text() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        4 => prop::sample::select(vec![
            "&a ", "&b ", "*a", "*b", "[", "]", "{", "}", ", ", ": ", "\n", "\n  ", "- ",
            "<<: ", "!!binary ", "? ", "'", "\"", "---\n",
        ])
        .prop_map(str::to_owned),
        1 => "[a-z0-9]{1,4}",
    ];
    prop::collection::vec(token, 0..80).prop_map(|t| t.concat())
}

/// A valid protobuf ConfigMap body, for mutation.
fn config_map_frame() -> Vec<u8> {
    let cm = core::ConfigMap {
        metadata: Some(meta::ObjectMeta {
            name: Some("fuzz".into()),
            labels: [("a".to_owned(), "b".to_owned())].into(),
            ..Default::default()
        }),
        data: [("k".to_owned(), "v".to_owned())].into(),
        ..Default::default()
    };
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some("v1".into()),
            kind: Some("ConfigMap".into()),
        }),
        raw: Some(cm.encode_to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut out = b"k8s\0".to_vec();
    out.extend(unknown.encode_to_vec());
    out
}

/// The decoded value's size is within the YAML budget of its body.
fn within_budget(body: &[u8], result: &Result<serde_json::Value, GatewayError>) -> bool {
    match result {
        Ok(v) => serde_json::to_vec(v).map_or(0, |b| b.len()) <= 2 * yaml::budget_for(body.len()),
        Err(_) => true,
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn json_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_json(&body);
        let _ = decode_body(Some("application/json"), &body);
    }

    #[test]
    fn yaml_bodies_never_panic_and_stay_within_budget(text in yaml_text()) {
        let result = decode_yaml(text.as_bytes());
        prop_assert!(within_budget(text.as_bytes(), &result));
    }

    #[test]
    fn yaml_raw_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let result = decode_body(Some("application/yaml"), &body);
        prop_assert!(within_budget(&body, &result));
    }

    /// Nested alias chains (each level names the previous one `fan` times)
    /// are refused or small, whatever the shape.
    #[test]
    fn yaml_alias_chains_are_bounded(levels in 1usize..12, fan in 1usize..12) {
        let mut doc = String::from("l0: &l0 [x, y, z]\n");
        for i in 1..=levels {
            let refs = vec![format!("*l{}", i - 1); fan].join(", ");
            doc.push_str(&format!("l{i}: &l{i} [{refs}]\n"));
        }
        let result = decode_yaml(doc.as_bytes());
        prop_assert!(within_budget(doc.as_bytes(), &result));
    }

    #[test]
    fn protobuf_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut framed = b"k8s\0".to_vec();
        framed.extend(&body);
        let _ = protobuf::decode(&framed);
        let _ = protobuf::decode(&body);
    }

    #[test]
    fn mutated_protobuf_bodies_never_panic(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut body = config_map_frame();
        for (i, b) in flips {
            let i = 4 + i.index(body.len() - 4);
            body[i] = b;
        }
        let _ = protobuf::decode(&body);
        let n = cut.index(body.len());
        let _ = protobuf::decode(&body[..n]);
    }

    #[test]
    fn agent_stream_messages_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = rpb::AgentMessage::decode(body.as_slice());
        let _ = rpb::ControlMessage::decode(body.as_slice());
    }
}

#[test]
fn the_valid_protobuf_seed_decodes() {
    let v = protobuf::decode(&config_map_frame()).unwrap();
    assert_eq!(v["metadata"]["name"], "fuzz");
}
