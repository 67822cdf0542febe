//! `terraform-provider-manifold`: started by Terraform, never by hand.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    terraform_provider_manifold::main()
}
