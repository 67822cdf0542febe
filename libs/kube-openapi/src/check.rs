//! A self-check of the built documents against what kubectl relies on.

use serde_json::{Map, Value};

use crate::definitions::for_each_ref;
use crate::documents::{self, Documents};
use crate::error::Error;
use crate::resources::{GROUP_VERSIONS, SERVED, group_version_path};

/// Definitions whose every field must be described: what
/// `kubectl explain deployment` and `deployment.spec.template` print.
const EXPLAINED: &[&str] = &[
    "io.k8s.api.apps.v1.Deployment",
    "io.k8s.api.apps.v1.DeploymentSpec",
    "io.k8s.api.core.v1.PodTemplateSpec",
    "io.k8s.api.core.v1.PodSpec",
    "io.k8s.api.core.v1.Container",
];

/// Checks every document: all `$ref`s resolve, every served kind (and its
/// list) carries `x-kubernetes-group-version-kind`, every PATCH operation has
/// a group-version-kind and a `fieldValidation` query parameter, and the
/// fields `kubectl explain` shows for Deployments have descriptions.
pub fn check() -> Result<(), Error> {
    check_documents(documents::get())
}

fn check_documents(docs: &Documents) -> Result<(), Error> {
    for (group, version) in GROUP_VERSIONS {
        let path = group_version_path(group, version);
        if !docs.v3.iter().any(|d| d.path == path) {
            return Err(Error::MissingGroupVersion(path));
        }
    }
    for doc in &docs.v3 {
        let name = format!("openapi/v3/{}", doc.path);
        let schemas = doc
            .document
            .pointer("/components/schemas")
            .and_then(Value::as_object);
        check_document(&name, &doc.document, schemas, "#/components/schemas/")?;
    }
    let definitions = docs
        .v2
        .document
        .get("definitions")
        .and_then(Value::as_object);
    check_document(
        "openapi/v2",
        &docs.v2.document,
        definitions,
        "#/definitions/",
    )
}

fn check_document(
    name: &str,
    document: &Value,
    definitions: Option<&Map<String, Value>>,
    prefix: &str,
) -> Result<(), Error> {
    let empty = Map::new();
    let definitions = definitions.unwrap_or(&empty);

    let mut dangling = None;
    for_each_ref(document, "", &mut |reference| {
        let resolved = reference
            .strip_prefix(prefix)
            .is_some_and(|target| definitions.contains_key(target));
        if !resolved && dangling.is_none() {
            dangling = Some(reference.to_owned());
        }
    });
    if let Some(reference) = dangling {
        return Err(Error::DanglingRef {
            document: name.into(),
            reference,
        });
    }

    for resource in SERVED {
        for definition in [
            resource.definition().into_owned(),
            resource.list_definition(),
        ] {
            let Some(schema) = definitions.get(&definition) else {
                continue;
            };
            if schema
                .get("x-kubernetes-group-version-kind")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty)
            {
                return Err(Error::MissingGroupVersionKind {
                    document: name.into(),
                    definition,
                });
            }
        }
    }

    let paths = document
        .get("paths")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    for (path, item) in paths {
        let Some(patch) = item.get("patch") else {
            continue;
        };
        let advertised = patch
            .get("parameters")
            .and_then(Value::as_array)
            .is_some_and(|ps| {
                ps.iter()
                    .any(|p| p["name"] == "fieldValidation" && p["in"] == "query")
            });
        if !advertised || patch.get("x-kubernetes-group-version-kind").is_none() {
            return Err(Error::PatchWithoutFieldValidation {
                document: name.into(),
                path: path.clone(),
            });
        }
    }

    for definition in EXPLAINED {
        let Some(schema) = definitions.get(*definition) else {
            continue;
        };
        let properties = schema
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        for (field, property) in properties {
            let described = property
                .get("description")
                .and_then(Value::as_str)
                .is_some_and(|d| !d.trim().is_empty());
            if !described {
                return Err(Error::MissingDescription {
                    document: name.into(),
                    definition: (*definition).into(),
                    field: field.clone(),
                });
            }
        }
    }
    Ok(())
}
