//! The `tfplugin6.Provider` service: decodes Terraform's values, dispatches
//! to the resource or data source named in the call, and encodes the answer.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use tonic::{Request, Response, Status};

use crate::client::{self, Client};
use crate::diag::{self, Diag};
use crate::framework::{self, DataSource, Resource};
use crate::schema::Schema;
use crate::tfplugin6 as tf;
use crate::value::{Obj, Value};

pub struct Provider {
    resources: BTreeMap<&'static str, (Box<dyn Resource>, Schema)>,
    data_sources: BTreeMap<&'static str, (Box<dyn DataSource>, Schema)>,
    client: RwLock<Option<Client>>,
}

impl Provider {
    pub fn new() -> Provider {
        Provider {
            resources: crate::resources::all()
                .into_iter()
                .map(|r| {
                    (r.type_name(), {
                        let s = r.schema();
                        (r, s)
                    })
                })
                .collect(),
            data_sources: crate::data_sources::all()
                .into_iter()
                .map(|d| {
                    (d.type_name(), {
                        let s = d.schema();
                        (d, s)
                    })
                })
                .collect(),
            client: RwLock::new(None),
        }
    }

    fn resource(&self, name: &str) -> Result<&(Box<dyn Resource>, Schema), Diag> {
        self.resources
            .get(name)
            .ok_or_else(|| Diag::error(format!("Unknown resource type {name}"), ""))
    }

    fn data_source(&self, name: &str) -> Result<&(Box<dyn DataSource>, Schema), Diag> {
        self.data_sources
            .get(name)
            .ok_or_else(|| Diag::error(format!("Unknown data source {name}"), ""))
    }

    fn client(&self) -> Result<Client, Diag> {
        self.client
            .read()
            .expect("client lock")
            .clone()
            .ok_or_else(|| Diag::error("The Manifold provider is not configured", ""))
    }
}

impl Default for Provider {
    fn default() -> Self {
        Provider::new()
    }
}

/// A `DynamicValue` as an object of `schema` (None for null).
fn decode(schema: &Schema, v: Option<&tf::DynamicValue>) -> Result<Option<Obj>, Diag> {
    let Some(v) = v else { return Ok(None) };
    let value = if !v.msgpack.is_empty() {
        Value::from_msgpack(&v.msgpack)
            .map_err(|e| Diag::error("Cannot decode a value from Terraform", format!("{e:#}")))?
    } else if !v.json.is_empty() {
        let j: serde_json::Value = serde_json::from_slice(&v.json)
            .map_err(|e| Diag::error("Cannot decode a value from Terraform", e.to_string()))?;
        Value::from_json(&j)
    } else {
        Value::Null
    };
    match value {
        Value::Null => Ok(None),
        Value::Map(m) => Ok(Some(schema.conform(m))),
        other => Err(Diag::error(
            "Unexpected value from Terraform",
            format!("expected an object, got {other:?}"),
        )),
    }
}

fn encode(obj: Option<Obj>) -> Option<tf::DynamicValue> {
    let v = obj.map_or(Value::Null, Value::Map);
    Some(tf::DynamicValue {
        msgpack: v.to_msgpack(),
        json: Vec::new(),
    })
}

/// Runs a fallible step, collecting its diagnostic.
macro_rules! attempt {
    ($diags:ident, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(d) => {
                $diags.push(d);
                return Ok(with_diags(Response::new(Default::default()), $diags));
            }
        }
    };
}

/// Response types that carry diagnostics.
trait HasDiags {
    fn set_diags(&mut self, d: Vec<tf::Diagnostic>);
}

macro_rules! has_diags {
    ($($t:ty),*) => {$(
        impl HasDiags for $t {
            fn set_diags(&mut self, d: Vec<tf::Diagnostic>) {
                self.diagnostics = d;
            }
        }
    )*};
}

has_diags!(
    tf::validate_provider_config::Response,
    tf::validate_resource_config::Response,
    tf::validate_data_resource_config::Response,
    tf::upgrade_resource_state::Response,
    tf::configure_provider::Response,
    tf::read_resource::Response,
    tf::plan_resource_change::Response,
    tf::apply_resource_change::Response,
    tf::import_resource_state::Response,
    tf::read_data_source::Response
);

fn with_diags<T: HasDiags>(mut r: Response<T>, diags: Vec<Diag>) -> Response<T> {
    r.get_mut().set_diags(diag::to_proto(&diags));
    r
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl tf::provider_server::Provider for Arc<Provider> {
    async fn get_metadata(
        &self,
        _: Request<tf::get_metadata::Request>,
    ) -> Reply<tf::get_metadata::Response> {
        Ok(Response::new(tf::get_metadata::Response {
            server_capabilities: Some(tf::ServerCapabilities::default()),
            diagnostics: Vec::new(),
            data_sources: self
                .data_sources
                .keys()
                .map(|n| tf::get_metadata::DataSourceMetadata {
                    type_name: (*n).to_owned(),
                })
                .collect(),
            resources: self
                .resources
                .keys()
                .map(|n| tf::get_metadata::ResourceMetadata {
                    type_name: (*n).to_owned(),
                })
                .collect(),
        }))
    }

    async fn get_provider_schema(
        &self,
        _: Request<tf::get_provider_schema::Request>,
    ) -> Reply<tf::get_provider_schema::Response> {
        Ok(Response::new(tf::get_provider_schema::Response {
            provider: Some(client::provider_schema().to_proto()),
            resource_schemas: self
                .resources
                .iter()
                .map(|(n, (_, s))| ((*n).to_owned(), s.to_proto()))
                .collect(),
            data_source_schemas: self
                .data_sources
                .iter()
                .map(|(n, (_, s))| ((*n).to_owned(), s.to_proto()))
                .collect(),
            diagnostics: Vec::new(),
            provider_meta: None,
            server_capabilities: Some(tf::ServerCapabilities::default()),
        }))
    }

    async fn validate_provider_config(
        &self,
        r: Request<tf::validate_provider_config::Request>,
    ) -> Reply<tf::validate_provider_config::Response> {
        let mut diags = Vec::new();
        let config = attempt!(
            diags,
            decode(&client::provider_schema(), r.get_ref().config.as_ref())
        );
        diags.extend(client::validate_config(&config.unwrap_or_default()));
        Ok(with_diags(Response::new(Default::default()), diags))
    }

    async fn validate_resource_config(
        &self,
        r: Request<tf::validate_resource_config::Request>,
    ) -> Reply<tf::validate_resource_config::Response> {
        let mut diags = Vec::new();
        let (res, schema) = attempt!(diags, self.resource(&r.get_ref().type_name));
        let config = attempt!(diags, decode(schema, r.get_ref().config.as_ref()));
        diags.extend(res.validate(&config.unwrap_or_default()));
        Ok(with_diags(Response::new(Default::default()), diags))
    }

    async fn validate_data_resource_config(
        &self,
        r: Request<tf::validate_data_resource_config::Request>,
    ) -> Reply<tf::validate_data_resource_config::Response> {
        let mut diags = Vec::new();
        let (ds, schema) = attempt!(diags, self.data_source(&r.get_ref().type_name));
        let config = attempt!(diags, decode(schema, r.get_ref().config.as_ref()));
        diags.extend(ds.validate(&config.unwrap_or_default()));
        Ok(with_diags(Response::new(Default::default()), diags))
    }

    async fn upgrade_resource_state(
        &self,
        r: Request<tf::upgrade_resource_state::Request>,
    ) -> Reply<tf::upgrade_resource_state::Response> {
        let mut diags = Vec::new();
        let req = r.into_inner();
        let (_, schema) = attempt!(diags, self.resource(&req.type_name));
        // Version 0 is the only one so far: the stored JSON already has this
        // shape; attributes added since come out null.
        let json = req.raw_state.map(|s| s.json).unwrap_or_default();
        let state = attempt!(
            diags,
            decode(
                schema,
                Some(&tf::DynamicValue {
                    msgpack: Vec::new(),
                    json,
                })
            )
        );
        Ok(with_diags(
            Response::new(tf::upgrade_resource_state::Response {
                upgraded_state: encode(state),
                diagnostics: Vec::new(),
            }),
            diags,
        ))
    }

    async fn configure_provider(
        &self,
        r: Request<tf::configure_provider::Request>,
    ) -> Reply<tf::configure_provider::Response> {
        let mut diags = Vec::new();
        let config = attempt!(
            diags,
            decode(&client::provider_schema(), r.get_ref().config.as_ref())
        )
        .unwrap_or_default();
        diags.extend(client::validate_config(&config));
        if !diag::has_errors(&diags) {
            let c = attempt!(diags, Client::from_config(&config));
            *self.client.write().expect("client lock") = Some(c);
        }
        Ok(with_diags(Response::new(Default::default()), diags))
    }

    async fn read_resource(
        &self,
        r: Request<tf::read_resource::Request>,
    ) -> Reply<tf::read_resource::Response> {
        let mut diags = Vec::new();
        let req = r.into_inner();
        let (res, schema) = attempt!(diags, self.resource(&req.type_name));
        let Some(prior) = attempt!(diags, decode(schema, req.current_state.as_ref())) else {
            return Ok(Response::new(tf::read_resource::Response {
                new_state: encode(None),
                diagnostics: Vec::new(),
                private: req.private,
            }));
        };
        let client = attempt!(diags, self.client());
        // Gone (deleted outside Terraform): a null state drops it from the
        // state, and the next plan creates it again.
        let new_state = attempt!(
            diags,
            client
                .bounded(
                    &format!("Reading {}", req.type_name),
                    res.read(&client, &prior)
                )
                .await
        )
        .map(|api| framework::refresh(schema, &prior, api));
        Ok(Response::new(tf::read_resource::Response {
            new_state: encode(new_state),
            diagnostics: Vec::new(),
            private: req.private,
        }))
    }

    async fn plan_resource_change(
        &self,
        r: Request<tf::plan_resource_change::Request>,
    ) -> Reply<tf::plan_resource_change::Response> {
        let mut diags = Vec::new();
        let req = r.into_inner();
        let (_, schema) = attempt!(diags, self.resource(&req.type_name));
        let prior = attempt!(diags, decode(schema, req.prior_state.as_ref()));
        let proposed = attempt!(diags, decode(schema, req.proposed_new_state.as_ref()));
        let plan = framework::plan(schema, prior.as_ref(), proposed);
        Ok(Response::new(tf::plan_resource_change::Response {
            planned_state: encode(plan.planned),
            requires_replace: plan
                .requires_replace
                .iter()
                .map(|a| diag::attr_path(a))
                .collect(),
            planned_private: req.prior_private,
            diagnostics: Vec::new(),
        }))
    }

    async fn apply_resource_change(
        &self,
        r: Request<tf::apply_resource_change::Request>,
    ) -> Reply<tf::apply_resource_change::Response> {
        let mut diags = Vec::new();
        let req = r.into_inner();
        let (res, schema) = attempt!(diags, self.resource(&req.type_name));
        let prior = attempt!(diags, decode(schema, req.prior_state.as_ref()));
        let planned = attempt!(diags, decode(schema, req.planned_state.as_ref()));
        let client = attempt!(diags, self.client());
        let new_state = match (prior, planned) {
            (Some(prior), None) => match client
                .bounded(
                    &format!("Deleting {}", req.type_name),
                    res.delete(&client, &prior),
                )
                .await
            {
                Ok(()) => None,
                Err(d) => {
                    // Keep the object in state: it still exists.
                    diags.push(d);
                    Some(prior)
                }
            },
            (None, Some(planned)) => match client
                .bounded(
                    &format!("Creating {}", req.type_name),
                    res.create(&client, &planned),
                )
                .await
            {
                Ok(api) => Some(framework::settle(schema, &planned, api)),
                Err(e) => {
                    diags.push(e.diag);
                    // Created, then a later step failed: record the object
                    // (Terraform taints it) rather than lose track of it.
                    e.partial
                        .map(|api| framework::settle(schema, &planned, api))
                }
            },
            (Some(prior), Some(planned)) => match client
                .bounded(
                    &format!("Updating {}", req.type_name),
                    res.update(&client, &prior, &planned),
                )
                .await
            {
                Ok(api) => Some(framework::settle(schema, &planned, api)),
                Err(d) => {
                    diags.push(d);
                    Some(prior)
                }
            },
            (None, None) => None,
        };
        Ok(with_diags(
            Response::new(tf::apply_resource_change::Response {
                new_state: encode(new_state),
                private: req.planned_private,
                diagnostics: Vec::new(),
            }),
            diags,
        ))
    }

    async fn import_resource_state(
        &self,
        r: Request<tf::import_resource_state::Request>,
    ) -> Reply<tf::import_resource_state::Response> {
        let mut diags = Vec::new();
        let req = r.into_inner();
        let (res, schema) = attempt!(diags, self.resource(&req.type_name));
        let client = attempt!(diags, self.client());
        let skeleton = schema.conform(attempt!(diags, res.import_state(&req.id)));
        let Some(api) = attempt!(
            diags,
            client
                .bounded(
                    &format!("Importing {}", req.type_name),
                    res.read(&client, &skeleton)
                )
                .await
        ) else {
            diags.push(Diag::error(
                "Cannot import a non-existent object",
                format!(
                    "{} {:?} does not exist (or is not visible to this token).",
                    req.type_name, req.id
                ),
            ));
            return Ok(with_diags(Response::new(Default::default()), diags));
        };
        let mut state = skeleton;
        state.extend(api);
        let state = schema.conform(state);
        Ok(Response::new(tf::import_resource_state::Response {
            imported_resources: vec![tf::import_resource_state::ImportedResource {
                type_name: req.type_name,
                state: encode(Some(state)),
                private: Vec::new(),
            }],
            diagnostics: Vec::new(),
        }))
    }

    async fn read_data_source(
        &self,
        r: Request<tf::read_data_source::Request>,
    ) -> Reply<tf::read_data_source::Response> {
        let mut diags = Vec::new();
        let req = r.into_inner();
        let (ds, schema) = attempt!(diags, self.data_source(&req.type_name));
        let config = attempt!(diags, decode(schema, req.config.as_ref())).unwrap_or_default();
        let client = attempt!(diags, self.client());
        let api = attempt!(
            diags,
            client
                .bounded(
                    &format!("Reading {}", req.type_name),
                    ds.read(&client, &config)
                )
                .await
        );
        let mut state = config;
        for a in &schema.attrs {
            if a.is_computed()
                && state
                    .get(a.name)
                    .is_none_or(|v| v.is_null() || v.is_unknown())
            {
                state.insert(
                    a.name.to_owned(),
                    api.get(a.name).cloned().unwrap_or(Value::Null),
                );
            }
        }
        Ok(Response::new(tf::read_data_source::Response {
            state: encode(Some(schema.conform(state))),
            diagnostics: Vec::new(),
        }))
    }

    async fn stop_provider(
        &self,
        _: Request<tf::stop_provider::Request>,
    ) -> Reply<tf::stop_provider::Response> {
        Ok(Response::new(Default::default()))
    }
}
