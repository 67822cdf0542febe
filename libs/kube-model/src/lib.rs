//! manifold-kube-model (placeholder; being written)
