//! Generated code for Manifold's gRPC packages, plus the encoded file
//! descriptor set that server reflection publishes.
#![forbid(unsafe_code)]
#![allow(clippy::all, clippy::pedantic, missing_docs)]

/// Every Manifold proto file, encoded as a `FileDescriptorSet`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/manifold_descriptor.bin"));

pub mod tenancy {
    pub mod v1 {
        tonic::include_proto!("manifold.tenancy.v1");
    }
}

pub mod sites {
    pub mod v1 {
        tonic::include_proto!("manifold.sites.v1");
    }
}

pub mod vk8s {
    pub mod v1 {
        tonic::include_proto!("manifold.vk8s.v1");
    }
}

pub mod replication {
    pub mod v1 {
        tonic::include_proto!("manifold.replication.v1");
    }
}

pub mod audit {
    pub mod v1 {
        tonic::include_proto!("manifold.audit.v1");
    }
}
