//! The project's own binaries run as real child processes (a service that can
//! be killed with SIGKILL, a CLI driven like a user would).
//!
//! `make test` builds every workspace binary (`cargo build --workspace --bins`)
//! before the test runner starts; tests find them beside the test executable's
//! profile directory, or in `MANIFOLD_BIN_DIR`.

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context, Result, bail};

/// Path of a binary built from this workspace (`manifold`, `mfctl`, ...).
pub fn binary(name: &str) -> Result<PathBuf> {
    let dir = match std::env::var_os("MANIFOLD_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        // target/<profile>/deps/suite-<hash> (a test) or
        // target/<profile>/manifold-load (a tool) → target/<profile>
        None => {
            let exe = std::env::current_exe()?;
            let parent = exe.parent().context("locating the target directory")?;
            if parent.ends_with("deps") {
                parent
                    .parent()
                    .context("locating the target directory")?
                    .to_owned()
            } else {
                parent.to_owned()
            }
        }
    };
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{} is missing: run the tests through `make test` (it builds the workspace's \
             binaries first), or `cargo build --workspace --bins`",
            path.display()
        );
    }
    Ok(path)
}

/// A port on 127.0.0.1 that was free a moment ago (for a process that must
/// come back on the same address after a restart).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A child process that is killed (SIGKILL) when dropped. Its stdout and
/// stderr go to a log file, shown by [`Service::log`] when a test fails.
pub struct Service {
    child: tokio::process::Child,
    log: PathBuf,
}

impl Service {
    /// Starts `binary` with `args` and `env` (added to the inherited
    /// environment), logging to `log`.
    pub fn start(binary: &Path, args: &[&str], env: &[(&str, String)], log: &Path) -> Result<Self> {
        let out = std::fs::File::create(log)?;
        let err = out.try_clone()?;
        let mut cmd = tokio::process::Command::new(binary);
        // SAFETY: prctl is async-signal-safe. The child gets SIGKILL when the
        // thread that started it ends (a test's thread, a runtime worker at
        // shutdown, or the whole process killed), so nothing is orphaned.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Self {
            child,
            log: log.to_owned(),
        })
    }

    /// Kills the process with SIGKILL, as a crash or an OOM kill would, and
    /// reaps it.
    pub async fn kill(mut self) -> Result<()> {
        self.child.start_kill()?;
        tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .context("the killed process did not exit")??;
        Ok(())
    }

    /// Stops the process the polite way (SIGTERM), as a supervisor would; kills it
    /// when it is still running after `grace`.
    pub async fn terminate(mut self, grace: Duration) {
        if let Some(pid) = self.child.id() {
            crate::spawner::signal(pid, libc::SIGTERM);
        }
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// What the process printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Waits up to `limit` until something accepts TCP connections at `addr`.
pub async fn wait_for_port(addr: SocketAddr, limit: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("nothing listens on {addr} after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
