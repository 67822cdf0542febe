//! manifold-config (placeholder; being written)
