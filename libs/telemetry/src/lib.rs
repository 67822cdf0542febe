//! manifold-telemetry (placeholder; being written)
