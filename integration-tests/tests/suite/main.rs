//! The one integration test binary: every end-to-end test, against real
//! Postgres and the real clients.

mod audit;
mod faults;
mod grpcurl;
mod helm;
mod helm_cli;
mod hostile;
mod kube_client;
mod kubectl;
mod kubectl_matrix;
mod mfctl;
mod multi_replica;
mod observability;
mod real_sites;
mod reference;
mod replication;
mod rls;
mod secrets_at_rest;
mod security_tokens;
mod site_agent;
mod sites;
mod tenancy;
mod tenant_deletion;
mod terraform;
mod vk8s_grpc;
mod workload_policy;
