//! manifold-db (placeholder; being written)
