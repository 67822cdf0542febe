//! manifold-kube-openapi (placeholder; being written)
