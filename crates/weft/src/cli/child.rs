//! Children that do not outlive the process that started them.

// The one unsafe call: `pre_exec`, which std marks unsafe for what the closure might
// do between fork and exec; ours makes one system call.
#![allow(unsafe_code)]

use std::os::unix::process::CommandExt;

/// Asks the kernel to send the child SIGTERM when its parent dies, however it dies
/// (SIGKILL included): `weft demo`'s sidecars then drain and stop instead of
/// retrying a control plane that is gone, and `weft run`'s application stops with its
/// sidecar. The signal follows the thread that spawned
/// the child, so spawn from a thread that lives as long as the parent (the main
/// thread or a runtime worker, not a blocking-pool thread).
pub fn die_with_parent(command: &mut std::process::Command) -> &mut std::process::Command {
    // SAFETY: the closure runs between fork and exec and makes one prctl system call,
    // which allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM))
                .map_err(std::io::Error::from)
        })
    }
}
