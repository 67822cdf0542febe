//! The Manifold site agent: registers a site with the control plane, keeps its one
//! `SiteSync.Connect` stream, applies what is placed on the site to a cluster, and
//! reports what the cluster observes.
//!
//! Layout: `model` (domain types), `convert` (the wire edge), `feed` (observed state
//! with change tracking), `backend` (the cluster: `kube` or `simulated`), `identity`
//! (key, certificate, registration), `session` (the stream and reconnects), `cli`
//! (the binary's flags).
//!
//! Many agents can share one process and one Tokio runtime (the all-in-one runs its
//! simulated sites this way): an agent is a few tasks, not threads.
#![forbid(unsafe_code)]

pub mod backend;
pub mod cli;
mod config;
pub mod convert;
mod error;
pub mod feed;
pub mod fleet;
mod identity;
pub mod model;
mod session;

pub use backend::simulated::{SimulatedBackend, SimulatedOptions};
pub use backend::{Backend, LogStream};
pub use config::{AGENT_VERSION, AgentConfig};
pub use error::{AgentError, BackendError, ModelError};
pub use feed::{StatusBatch, StatusFeed};
pub use fleet::{Fleet, SimulatedSite, start_simulated_sites};
pub use identity::{Identity, ensure_identity, register};
pub use session::run;
