//! manifold-pki (placeholder; being written)
