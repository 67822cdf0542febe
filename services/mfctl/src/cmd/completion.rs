//! `mfctl completion SHELL`: prints a completion script generated from the
//! command tree, so it never drifts from the flags.

use clap_complete::Shell;

use crate::{Ctx, error::Result};

#[derive(clap::Args)]
pub struct Args {
    /// bash, zsh, fish, powershell or elvish.
    shell: Shell,
}

pub async fn run(args: Args, _ctx: &mut Ctx) -> Result<()> {
    let mut cmd = crate::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "mfctl", &mut script);
    crate::output::emit(&String::from_utf8_lossy(&script));
    Ok(())
}
