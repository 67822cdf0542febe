//! Property-based fuzzing (proptest) of what this crate parses or applies on
//! a client's behalf: the JSON patch, merge patch, strategic merge patch and
//! server-side apply engines, and the label and field selector parsers. The
//! property is always the same: no panic, and a patch result is never larger
//! than [`MAX_RESULT_BYTES`] (no unbounded allocation).
//!
//! Runs in `make test` with `MANIFOLD_FUZZ_CASES` cases per property
//! (default [`DEFAULT_CASES`]); raise it for a longer run, e.g.
//! `MANIFOLD_FUZZ_CASES=20000 cargo test -p manifold-kube-model --lib fuzz`.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::patch::{self, MAX_RESULT_BYTES, PatchType};
use crate::selectors::{FieldSelector, LabelSelector};

/// Cases per property when `MANIFOLD_FUZZ_CASES` is unset.
pub const DEFAULT_CASES: u32 = 64;

pub fn cases() -> u32 {
    std::env::var("MANIFOLD_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Keys that steer the engines: Kubernetes fields with merge keys, SMP
/// directives, and a few plain ones.
fn key() -> impl Strategy<Value = String> {
    let steering = prop::sample::select(vec![
        "metadata",
        "name",
        "labels",
        "spec",
        "containers",
        "ports",
        "containerPort",
        "env",
        "volumes",
        "$patch",
        "$retainKeys",
        "$setElementOrder/containers",
        "$deleteFromPrimitiveList/finalizers",
        "finalizers",
    ])
    .prop_map(str::to_owned);
    prop_oneof![3 => steering, 1 => "[a-z]{1,6}"]
}

/// Any JSON value, a few levels deep.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        prop_oneof![
            Just("replace".to_owned()),
            Just("delete".to_owned()),
            Just("merge".to_owned()),
            "[a-z0-9]{0,8}",
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// JSON pointers into documents like [`value`]'s, some invalid.
fn pointer() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            key(),
            Just("-".to_owned()),
            Just("0".to_owned()),
            Just("1".to_owned()),
            "~[01x]"
        ],
        0..4,
    )
    .prop_map(|parts| parts.iter().map(|p| format!("/{p}")).collect())
}

/// One RFC 6902 operation, `copy` over-represented (it is the amplifier).
fn operation() -> impl Strategy<Value = Value> {
    prop_oneof![
        (pointer(), value()).prop_map(|(p, v)| json!({"op": "add", "path": p, "value": v})),
        pointer().prop_map(|p| json!({"op": "remove", "path": p})),
        (pointer(), value()).prop_map(|(p, v)| json!({"op": "replace", "path": p, "value": v})),
        (pointer(), pointer()).prop_map(|(f, p)| json!({"op": "move", "from": f, "path": p})),
        (pointer(), pointer()).prop_map(|(f, p)| json!({"op": "copy", "from": f, "path": p})),
        (pointer(), pointer()).prop_map(|(f, p)| json!({"op": "copy", "from": f, "path": p})),
        (pointer(), value()).prop_map(|(p, v)| json!({"op": "test", "path": p, "value": v})),
        value(),
    ]
}

fn kind() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("Deployment"),
        Just("Pod"),
        Just("ConfigMap"),
        Just("Service"),
        Just("Unknown")
    ]
}

fn check_bounded(result: Result<Value, crate::PatchError>) -> Result<(), TestCaseError> {
    if let Ok(v) = result {
        let n = serde_json::to_vec(&v).map(|b| b.len()).unwrap_or(0);
        prop_assert!(n <= MAX_RESULT_BYTES, "result of {n} bytes");
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn json_patch_never_panics_and_stays_bounded(
        doc in value(),
        ops in prop::collection::vec(operation(), 0..40),
    ) {
        check_bounded(patch::json_patch(&doc, &Value::Array(ops)))?;
    }

    /// Doubling `copy` chains from a seed near the limit stop at it.
    #[test]
    fn doubling_copies_are_bounded(seed in 1usize..200_000, rounds in 1usize..30) {
        let mut ops = vec![json!({"op": "add", "path": "/a", "value": ["x".repeat(seed)]})];
        for i in 0..rounds {
            ops.push(json!({"op": "copy", "from": "/a", "path": "/a/-"}));
            ops.push(json!({"op": "copy", "from": "/a", "path": format!("/b{i}")}));
        }
        check_bounded(patch::json_patch(&json!({}), &Value::Array(ops)))?;
    }

    #[test]
    fn merge_and_strategic_patches_never_panic(
        kind in kind(),
        doc in value(),
        p in value(),
    ) {
        check_bounded(patch::apply_patch(PatchType::Merge, kind, &doc, &p))?;
        check_bounded(patch::apply_patch(PatchType::StrategicMerge, kind, &doc, &p))?;
        let _ = patch::apply_patch(PatchType::Json, kind, &doc, &p);
    }

    #[test]
    fn server_side_apply_never_panics(
        live in prop::option::of(value()),
        applied in value(),
        force in any::<bool>(),
    ) {
        let _ = patch::apply(live.as_ref(), &applied, "fuzz", force, "2026-01-01T00:00:00Z");
    }

    #[test]
    fn label_selectors_never_panic(input in "[a-z0-9./=!,()\\- in notexists]{0,64}", labels in value()) {
        if let Ok(s) = LabelSelector::parse(&input) {
            let _ = s.matches_object(&json!({"metadata": {"labels": labels}}));
        }
        let _ = LabelSelector::from_label_selector(&labels);
    }

    #[test]
    fn label_selectors_take_any_text(input in any::<String>()) {
        let _ = LabelSelector::parse(&input);
        let _ = FieldSelector::parse(&input);
    }

    #[test]
    fn field_selectors_never_panic(input in "[a-z.=!,\\\\]{0,48}", object in value()) {
        if let Ok(s) = FieldSelector::parse(&input) {
            let _ = s.matches(&object);
        }
    }
}
