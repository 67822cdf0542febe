//! manifold-auth (placeholder; being written)
