//! The gRPC adapter: `manifold.vk8s.v1` services over the core.

mod clusters;
mod convert;
mod feed;

use std::sync::Arc;

use manifold_proto::vk8s::v1 as pb;
use tokio_util::sync::CancellationToken;

use crate::core::Core;

pub fn add_to(
    core: Arc<Core>,
    shutdown: CancellationToken,
    routes: &mut tonic::service::RoutesBuilder,
) {
    routes
        .add_service(
            pb::virtual_cluster_service_server::VirtualClusterServiceServer::new(
                clusters::Clusters(core.clone()),
            ),
        )
        .add_service(pb::object_feed_server::ObjectFeedServer::new(feed::Feed {
            core,
            shutdown,
        }));
}
