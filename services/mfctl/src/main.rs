//! `mfctl`: the Manifold command-line client. Everything lives in the library
//! so the integration suite can build this same file as its own binary.

fn main() -> std::process::ExitCode {
    mfctl::main()
}
