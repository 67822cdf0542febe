//! The Terraform provider, built inside this package so the Terraform tests
//! can locate it with `env!("CARGO_BIN_EXE_terraform-provider-manifold-dev")`
//! (Cargo builds a package's binaries before its integration tests; another
//! package's binary would not be guaranteed to exist or be fresh). Same code
//! as `services/terraform-provider-manifold`'s binary.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    terraform_provider_manifold::main()
}
