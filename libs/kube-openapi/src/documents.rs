//! Assembles the served documents once and keeps them for the life of the
//! process: one OpenAPI 3.0 document per group-version, and one Swagger 2.0
//! document for everything.

use std::sync::OnceLock;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha512};

use crate::definitions::{self, SCALE};
use crate::dialect::Dialect;
use crate::operations;
use crate::resources::{GROUP_VERSIONS, group_version_path, in_group_version};

/// One group-version's OpenAPI 3.0 document, ready to serve.
#[derive(Debug)]
pub struct GroupVersionDocument {
    /// The index key and URL segment: `api/v1`, `apis/apps/v1`, ...
    pub path: String,
    pub document: Value,
    /// `document` serialized; serve these bytes as `application/json`.
    pub json: Vec<u8>,
    /// Upper-case hex SHA-512 of `json`. The index puts it in the document's
    /// URL (`?hash=`); it doubles as the ETag.
    pub hash: String,
}

/// The Swagger 2.0 document with its serialized form and hash.
#[derive(Debug)]
pub struct SwaggerDocument {
    pub document: Value,
    pub json: Vec<u8>,
    /// The same document as `openapi.v2.Document` protobuf (definitions
    /// only), for kubectl ≤ 1.27; serve as [`crate::V2_PROTOBUF`].
    pub protobuf: Vec<u8>,
    pub hash: String,
}

#[derive(Debug)]
pub(crate) struct Documents {
    pub(crate) v3: Vec<GroupVersionDocument>,
    pub(crate) v2: SwaggerDocument,
}

static DOCUMENTS: OnceLock<Documents> = OnceLock::new();

/// The documents, built on first use.
pub(crate) fn get() -> &'static Documents {
    DOCUMENTS.get_or_init(build)
}

fn info() -> Value {
    json!({ "title": "Kubernetes", "version": "unversioned" })
}

fn build() -> Documents {
    let canonical = definitions::build();
    let v3 = GROUP_VERSIONS
        .iter()
        .map(|(group, version)| group_version_document(&canonical, group, version))
        .collect();

    let mut paths = Map::new();
    for (group, version) in GROUP_VERSIONS {
        paths.extend(operations::paths(Dialect::V2, group, version));
    }
    let definitions = referenced_definitions(Dialect::V2, &canonical, &paths, &[SCALE]);
    let document = json!({
        "swagger": "2.0",
        "info": info(),
        "paths": paths,
        "definitions": definitions,
    });
    let (json, hash) = serialize(&document);
    let protobuf = crate::v2_proto::encode(&document);
    Documents {
        v3,
        v2: SwaggerDocument {
            document,
            json,
            protobuf,
            hash,
        },
    }
}

fn group_version_document(
    canonical: &Map<String, Value>,
    group: &str,
    version: &str,
) -> GroupVersionDocument {
    let paths = operations::paths(Dialect::V3, group, version);
    let mut extra_roots: Vec<String> = in_group_version(group, version)
        .flat_map(|r| [r.definition().into_owned(), r.list_definition()])
        .collect();
    if group == "autoscaling" {
        extra_roots.push(SCALE.to_owned());
    }
    let extra_roots: Vec<&str> = extra_roots.iter().map(String::as_str).collect();
    let schemas = referenced_definitions(Dialect::V3, canonical, &paths, &extra_roots);
    let document = json!({
        "openapi": "3.0.0",
        "info": info(),
        "paths": paths,
        "components": { "schemas": schemas },
    });
    let (json, hash) = serialize(&document);
    GroupVersionDocument {
        path: group_version_path(group, version),
        document,
        json,
        hash,
    }
}

/// The definitions `paths` and `extra_roots` reach, written in `dialect`.
fn referenced_definitions(
    dialect: Dialect,
    canonical: &Map<String, Value>,
    paths: &Map<String, Value>,
    extra_roots: &[&str],
) -> Map<String, Value> {
    let mut roots: Vec<String> = extra_roots.iter().map(|s| s.to_string()).collect();
    for item in paths.values() {
        definitions::for_each_ref(item, dialect.ref_prefix(), &mut |name| {
            roots.push(name.to_owned())
        });
    }
    definitions::closure(canonical, roots.iter().map(String::as_str))
        .into_iter()
        .filter_map(|name| {
            let definition = dialect.definition(&name, canonical.get(&name)?);
            Some((name, definition))
        })
        .collect()
}

fn serialize(document: &Value) -> (Vec<u8>, String) {
    // Display on a `Value` cannot fail, unlike the generic serializers.
    let json = document.to_string().into_bytes();
    let hash = hex::encode_upper(Sha512::digest(&json));
    (json, hash)
}
