//! Terraform provider for Manifold: a plugin-protocol-6 server (`plugin`,
//! `server`) over generic Terraform semantics (`framework`) and one module
//! per resource and data source, all calling Manifold's gRPC API (`client`).
#![forbid(unsafe_code)]

pub mod client;
pub mod data_sources;
pub mod diag;
pub mod framework;
pub mod plugin;
pub mod resources;
pub mod schema;
pub mod server;
pub mod value;

/// Generated server side of Terraform's plugin protocol 6 (`proto/tfplugin6.proto`).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod tfplugin6 {
    tonic::include_proto!("tfplugin6");
}

/// Generated go-plugin controller service (`proto/plugin.proto`).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod goplugin {
    tonic::include_proto!("plugin");
}

pub use plugin::main;
