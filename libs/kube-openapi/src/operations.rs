//! The `paths` of a group-version: one path item per REST endpoint, with
//! operations named, tagged and annotated the way kube-apiserver does it.
//!
//! kubectl relies on two things here. `--validate=strict` looks for a PATCH
//! operation whose `x-kubernetes-group-version-kind` is the object's kind and
//! checks that it lists the `fieldValidation` query parameter; it only looks
//! at the first such operation it meets, so every PATCH carries it.
//! Client-side apply builds a strategic merge patch from the v3 schemas when
//! that PATCH accepts `application/strategic-merge-patch+json`.

use serde_json::{Map, Value, json};

use crate::definitions::{API_RESOURCE_LIST, DELETE_OPTIONS, PATCH, SCALE, STATUS, WATCH_EVENT};
use crate::dialect::Dialect;
use crate::resources::{Scope, ServedResource, group_version_path, in_group_version};

#[derive(Clone, Copy)]
struct Param {
    name: &'static str,
    location: &'static str,
    ty: &'static str,
    description: &'static str,
}

const fn query(name: &'static str, ty: &'static str, description: &'static str) -> Param {
    Param {
        name,
        location: "query",
        ty,
        description,
    }
}

const PRETTY: Param = query(
    "pretty",
    "string",
    "If 'true', the output is pretty printed.",
);
const DRY_RUN: Param = query(
    "dryRun",
    "string",
    "When present, the request is processed in full but nothing is persisted. The only valid value is All.",
);
const FIELD_MANAGER: Param = query(
    "fieldManager",
    "string",
    "The name of the actor making the change, at most 128 printable characters. Required for apply patches (application/apply-patch+yaml), optional otherwise.",
);
const FIELD_VALIDATION: Param = query(
    "fieldValidation",
    "string",
    "How the server treats unknown or duplicate fields in the submitted object: Ignore drops them silently, Warn drops them and reports each in a warning header, Strict rejects the request with a BadRequest error.",
);
const FORCE: Param = query(
    "force",
    "boolean",
    "Apply patches only: take over fields another field manager owns instead of failing with a conflict. Must be unset for other patch types.",
);

const LIST: &[Param] = &[
    query(
        "allowWatchBookmarks",
        "boolean",
        "Watch only: ask for BOOKMARK events, which carry only a resourceVersion.",
    ),
    query(
        "continue",
        "string",
        "The continue token of the previous page of a paginated list.",
    ),
    query(
        "fieldSelector",
        "string",
        "Restricts the result to objects whose fields match, e.g. metadata.name=foo.",
    ),
    query(
        "labelSelector",
        "string",
        "Restricts the result to objects whose labels match, e.g. app=web,tier!=db.",
    ),
    query(
        "limit",
        "integer",
        "The most objects to return; a continue token follows when there are more.",
    ),
    query(
        "resourceVersion",
        "string",
        "The resourceVersion the list or watch starts from; see resourceVersionMatch.",
    ),
    query(
        "resourceVersionMatch",
        "string",
        "How resourceVersion is matched for a list: Exact or NotOlderThan.",
    ),
    query(
        "sendInitialEvents",
        "boolean",
        "Watch only: start with synthetic ADDED events for the current objects, then a BOOKMARK.",
    ),
    query(
        "timeoutSeconds",
        "integer",
        "Ends the list or watch call after this many seconds.",
    ),
    query(
        "watch",
        "boolean",
        "Watch for changes instead of listing, starting at resourceVersion.",
    ),
];

const DELETE: &[Param] = &[
    DRY_RUN,
    query(
        "gracePeriodSeconds",
        "integer",
        "Seconds before the object is deleted; zero deletes at once.",
    ),
    query(
        "ignoreStoreReadErrorWithClusterBreakingPotential",
        "boolean",
        "Deletes the object even if it cannot be read from storage. Unsafe.",
    ),
    query(
        "orphanDependents",
        "boolean",
        "Deprecated: use propagationPolicy. Whether dependents are orphaned.",
    ),
    query(
        "propagationPolicy",
        "string",
        "Whether and how dependents are garbage collected: Orphan, Background or Foreground.",
    ),
];

const PATCH_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];

/// One operation of a path item, before it is written in a dialect.
struct Operation<'a> {
    method: &'static str,
    id: String,
    description: String,
    action: Option<&'static str>,
    gvk: Option<(&'a str, &'a str, &'a str)>,
    params: Vec<Param>,
    /// Request body definition and the media types it is accepted as.
    body: Option<(&'a str, &'static [&'static str])>,
    /// Response definition and the success codes it comes with.
    response: (&'a str, &'static [u16]),
    watch: bool,
}

/// The path items of one group-version, keyed by absolute path.
pub(crate) fn paths(dialect: Dialect, group: &str, version: &str) -> Map<String, Value> {
    let prefix = format!("/{}", group_version_path(group, version));
    let tag = format!(
        "{}_{version}",
        if group.is_empty() { "core" } else { group }
    );
    let id_stem = format!(
        "{}{}",
        upper_first(if group.is_empty() { "core" } else { group }),
        upper_first(version)
    );
    let mut out = Map::new();

    let resources_op = Operation {
        method: "get",
        id: format!("get{id_stem}APIResources"),
        description: "get available resources".into(),
        action: None,
        gvk: None,
        params: vec![],
        body: None,
        response: (API_RESOURCE_LIST, &[200]),
        watch: false,
    };
    out.insert(
        format!("{prefix}/"),
        path_item(dialect, &tag, &[], vec![resources_op]),
    );

    for r in in_group_version(group, version) {
        resource_paths(dialect, r, &prefix, &tag, &id_stem, &mut out);
    }
    out
}

fn upper_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn resource_paths(
    dialect: Dialect,
    r: &ServedResource,
    prefix: &str,
    tag: &str,
    id_stem: &str,
    out: &mut Map<String, Value>,
) {
    let namespaced = r.scope == Scope::Namespaced;
    let definition = r.definition();
    let definition = definition.as_ref();
    let list_definition = r.list_definition();
    let list_definition = list_definition.as_str();
    let (kind, gvk) = (r.kind, Some((r.group, r.version, r.kind)));
    let scoped = if namespaced { "Namespaced" } else { "" };
    let base = if namespaced {
        format!("{prefix}/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("{prefix}/{}", r.plural)
    };
    let watch_base = if namespaced {
        format!("{prefix}/watch/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("{prefix}/watch/{}", r.plural)
    };
    let namespace_param = Param {
        name: "namespace",
        location: "path",
        ty: "string",
        description: "object name and auth scope, such as for teams and projects",
    };
    let name_param = Param {
        name: "name",
        location: "path",
        ty: "string",
        description: "name of the object",
    };
    let collection_params: Vec<Param> = if namespaced {
        vec![namespace_param, PRETTY]
    } else {
        vec![PRETTY]
    };
    let item_params: Vec<Param> = if namespaced {
        vec![name_param, namespace_param, PRETTY]
    } else {
        vec![name_param, PRETTY]
    };
    let list_op = |id: String| Operation {
        method: "get",
        id,
        description: format!("list or watch objects of kind {kind}"),
        action: Some("list"),
        gvk,
        params: LIST.to_vec(),
        body: None,
        response: (list_definition, &[200]),
        watch: true,
    };

    if namespaced {
        let all = list_op(format!("list{id_stem}{kind}ForAllNamespaces"));
        out.insert(
            format!("{prefix}/{}", r.plural),
            path_item(dialect, tag, &[PRETTY], vec![all]),
        );
        let watch_all = Operation {
            id: format!("watch{id_stem}{kind}ListForAllNamespaces"),
            description: format!("watch individual changes to a list of {kind}"),
            action: Some("watchlist"),
            response: (WATCH_EVENT, &[200]),
            ..list_op(String::new())
        };
        out.insert(
            format!("{prefix}/watch/{}", r.plural),
            path_item(dialect, tag, &[PRETTY], vec![watch_all]),
        );
    }

    let mut collection = vec![
        list_op(format!("list{id_stem}{scoped}{kind}")),
        Operation {
            method: "post",
            id: format!("create{id_stem}{scoped}{kind}"),
            description: format!("create a {kind}"),
            action: Some("post"),
            gvk,
            params: vec![DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION],
            body: Some((definition, &["*/*"])),
            response: (definition, &[200, 201, 202]),
            watch: false,
        },
    ];
    if r.delete_collection {
        let mut params = DELETE.to_vec();
        params.extend_from_slice(LIST);
        collection.push(Operation {
            method: "delete",
            id: format!("delete{id_stem}Collection{scoped}{kind}"),
            description: format!("delete collection of {kind}"),
            action: Some("deletecollection"),
            gvk,
            params,
            body: Some((DELETE_OPTIONS, &["*/*"])),
            response: (STATUS, &[200]),
            watch: false,
        });
    }
    out.insert(
        base.clone(),
        path_item(dialect, tag, &collection_params, collection),
    );

    let watch_list = Operation {
        id: format!("watch{id_stem}{scoped}{kind}List"),
        description: format!("watch individual changes to a list of {kind}"),
        action: Some("watchlist"),
        response: (WATCH_EVENT, &[200]),
        ..list_op(String::new())
    };
    out.insert(
        watch_base.clone(),
        path_item(dialect, tag, &collection_params, vec![watch_list]),
    );
    let watch_one = Operation {
        id: format!("watch{id_stem}{scoped}{kind}"),
        description: format!("watch changes to an object of kind {kind}"),
        action: Some("watch"),
        response: (WATCH_EVENT, &[200]),
        ..list_op(String::new())
    };
    out.insert(
        format!("{watch_base}/{{name}}"),
        path_item(dialect, tag, &item_params, vec![watch_one]),
    );

    let mut item = read_write_ops(id_stem, scoped, kind, "", gvk, definition);
    item.push(Operation {
        method: "delete",
        id: format!("delete{id_stem}{scoped}{kind}"),
        description: format!("delete a {kind}"),
        action: Some("delete"),
        gvk,
        params: DELETE.to_vec(),
        body: Some((DELETE_OPTIONS, &["*/*"])),
        response: (STATUS, &[200, 202]),
        watch: false,
    });
    out.insert(
        format!("{base}/{{name}}"),
        path_item(dialect, tag, &item_params, item),
    );

    if r.status {
        let ops = read_write_ops(id_stem, scoped, kind, "Status", gvk, definition);
        out.insert(
            format!("{base}/{{name}}/status"),
            path_item(dialect, tag, &item_params, ops),
        );
    }
    if r.scale {
        let scale_gvk = Some(("autoscaling", "v1", "Scale"));
        let ops = read_write_ops(id_stem, scoped, kind, "Scale", scale_gvk, SCALE);
        out.insert(
            format!("{base}/{{name}}/scale"),
            path_item(dialect, tag, &item_params, ops),
        );
    }
}

/// GET, PUT and PATCH of an object or of one of its subresources.
fn read_write_ops<'a>(
    id_stem: &str,
    scoped: &str,
    kind: &str,
    subresource: &str,
    gvk: Option<(&'a str, &'a str, &'a str)>,
    definition: &'a str,
) -> Vec<Operation<'a>> {
    let what = match subresource {
        "" => format!("the specified {kind}"),
        sub => format!("{} of the specified {kind}", sub.to_lowercase()),
    };
    let id = |verb: &str| format!("{verb}{id_stem}{scoped}{kind}{subresource}");
    vec![
        Operation {
            method: "get",
            id: id("read"),
            description: format!("read {what}"),
            action: Some("get"),
            gvk,
            params: vec![],
            body: None,
            response: (definition, &[200]),
            watch: false,
        },
        Operation {
            method: "put",
            id: id("replace"),
            description: format!("replace {what}"),
            action: Some("put"),
            gvk,
            params: vec![DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION],
            body: Some((definition, &["*/*"])),
            response: (definition, &[200, 201]),
            watch: false,
        },
        Operation {
            method: "patch",
            id: id("patch"),
            description: format!("partially update {what}"),
            action: Some("patch"),
            gvk,
            params: vec![DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION, FORCE],
            body: Some((PATCH, PATCH_TYPES)),
            response: (definition, &[200, 201]),
            watch: false,
        },
    ]
}

fn path_item(dialect: Dialect, tag: &str, params: &[Param], ops: Vec<Operation<'_>>) -> Value {
    let mut item = Map::new();
    for op in ops {
        item.insert(op.method.into(), operation(dialect, tag, op));
    }
    if !params.is_empty() {
        item.insert(
            "parameters".into(),
            params.iter().map(|p| parameter(dialect, p)).collect(),
        );
    }
    Value::Object(item)
}

fn parameter(dialect: Dialect, p: &Param) -> Value {
    let mut out = json!({ "name": p.name, "in": p.location, "description": p.description });
    match dialect {
        Dialect::V2 => {
            out["type"] = json!(p.ty);
            out["uniqueItems"] = json!(true);
        }
        Dialect::V3 => out["schema"] = json!({ "type": p.ty, "uniqueItems": true }),
    }
    if p.location == "path" {
        out["required"] = json!(true);
    }
    out
}

fn status_text(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        _ => "Unauthorized",
    }
}

fn operation(dialect: Dialect, tag: &str, op: Operation<'_>) -> Value {
    let produces: &[&str] = if op.watch {
        &["application/json", "application/json;stream=watch"]
    } else {
        &["application/json"]
    };
    let mut out = json!({
        "operationId": op.id,
        "description": op.description,
        "tags": [tag],
    });
    let mut params: Vec<Value> = op.params.iter().map(|p| parameter(dialect, p)).collect();
    let mut responses = Map::new();
    let (response_definition, codes) = op.response;
    for code in codes {
        let mut response = json!({ "description": status_text(*code) });
        match dialect {
            Dialect::V2 => response["schema"] = dialect.schema_ref(response_definition),
            Dialect::V3 => {
                let content: Map<String, Value> = produces
                    .iter()
                    .map(|media| {
                        (
                            media.to_string(),
                            json!({ "schema": dialect.schema_ref(response_definition) }),
                        )
                    })
                    .collect();
                response["content"] = Value::Object(content);
            }
        }
        responses.insert(code.to_string(), response);
    }
    responses.insert("401".into(), json!({ "description": status_text(401) }));
    out["responses"] = Value::Object(responses);

    match (dialect, op.body) {
        (Dialect::V2, Some((definition, media))) => {
            params.insert(0, json!({ "name": "body", "in": "body", "required": true, "schema": dialect.schema_ref(definition) }));
            out["consumes"] = json!(media);
        }
        (Dialect::V2, None) => out["consumes"] = json!(["*/*"]),
        (Dialect::V3, Some((definition, media))) => {
            let content: Map<String, Value> = media
                .iter()
                .map(|m| {
                    (
                        m.to_string(),
                        json!({ "schema": dialect.schema_ref(definition) }),
                    )
                })
                .collect();
            out["requestBody"] = json!({ "required": op.method != "delete", "content": content });
        }
        (Dialect::V3, None) => {}
    }
    if dialect == Dialect::V2 {
        out["produces"] = json!(produces);
        out["schemes"] = json!(["https"]);
    }
    if !params.is_empty() {
        out["parameters"] = Value::Array(params);
    }
    if let Some(action) = op.action {
        out["x-kubernetes-action"] = json!(action);
    }
    if let Some((group, version, kind)) = op.gvk {
        out["x-kubernetes-group-version-kind"] =
            json!({ "group": group, "kind": kind, "version": version });
    }
    out
}
