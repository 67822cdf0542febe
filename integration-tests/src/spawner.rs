//! Child processes that cannot outlive this process.
//!
//! Every process is spawned from one dedicated thread that lives as long as the
//! process, with `PR_SET_PDEATHSIG = SIGKILL`: Linux delivers the signal when the
//! thread that forked the child ends, so a child dies with its parent even when the
//! parent is killed with SIGKILL (a test runner's timeout, `kill -9`), and no
//! runtime worker thread exiting can take children with it. Children also stay in
//! the parent's process group, so a terminal's Ctrl-C reaches them directly.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::{Mutex, OnceLock, mpsc};

type Request = (Command, mpsc::Sender<io::Result<Child>>);

fn spawner() -> &'static Mutex<mpsc::Sender<Request>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("child-spawner".into())
            .spawn(move || {
                // Runs until the process exits: the senders live in a static.
                for (mut command, reply) in rx {
                    // SAFETY: prctl and getppid are async-signal-safe, as pre_exec
                    // requires; nothing here allocates or takes locks.
                    unsafe {
                        command.pre_exec(|| {
                            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                                return Err(io::Error::last_os_error());
                            }
                            // The parent may have died between fork and prctl.
                            if libc::getppid() == 1 {
                                return Err(io::Error::from_raw_os_error(libc::ESRCH));
                            }
                            Ok(())
                        });
                    }
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("starting the child-spawner thread");
        Mutex::new(tx)
    })
}

/// Spawns `command`; the child gets SIGKILL when this process dies.
pub fn spawn(command: Command) -> io::Result<Child> {
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((command, reply_tx))
        .map_err(|_| io::Error::other("the child-spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("the child-spawner thread is gone"))?
}

/// Sends `signal` to the process `pid` (no-op when it is gone).
pub fn signal(pid: u32, signal: i32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) with a pid we spawned; a stale pid fails with ESRCH.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}
