//! CPU priority of background work. On a machine that also answers
//! requests, the followers and the API's folds yield the CPU to the
//! request path (measured in the README, "API load").

use tracing::{debug, warn};

/// Lowers the calling thread's CPU priority to `nice` (threads it starts
/// inherit it). Never raises it: a thread already at `nice` or lower
/// priority is left alone, as is everything when `nice` is 0.
#[cfg(unix)]
pub fn lower_this_thread(nice: i32) {
    use rustix::process::{getpriority_process, setpriority_process};
    let thread = Some(rustix::thread::gettid());
    let current = getpriority_process(thread).unwrap_or(0);
    if nice <= current {
        return;
    }
    match setpriority_process(thread, nice) {
        Ok(()) => debug!(nice, "background work runs at a lower CPU priority"),
        Err(error) => warn!(nice, %error, "could not lower the CPU priority of background work"),
    }
}

/// Other systems: nothing to do.
#[cfg(not(unix))]
pub fn lower_this_thread(_nice: i32) {}
