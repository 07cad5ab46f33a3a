//! CPU priority of background work. On a machine that also answers
//! requests, the followers and the API's folds yield the CPU to the
//! request path (measured in the README, "API load").

use tracing::{debug, warn};

/// Lowers the calling thread's CPU priority to `nice` (threads it starts
/// inherit it), and on Linux moves it to the `SCHED_BATCH` policy: the
/// scheduler then never lets its wake-ups preempt a running thread, so a
/// request thread that wakes gets a core first. Never raises the priority
/// (a thread already at `nice` or lower keeps its own); `nice` 0 leaves
/// everything alone.
#[cfg(unix)]
pub fn lower_this_thread(nice: i32) {
    use rustix::process::{getpriority_process, setpriority_process};
    if nice <= 0 {
        return;
    }
    let thread = Some(rustix::thread::gettid());
    if getpriority_process(thread).unwrap_or(0) < nice {
        match setpriority_process(thread, nice) {
            Ok(()) => debug!(nice, "background work runs at a lower CPU priority"),
            Err(error) => warn!(nice, %error, "could not lower the CPU priority of background work"),
        }
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if let Err(error) = batch_policy() {
        warn!(%error, "could not move background work to the batch scheduling policy");
    }
}

/// Other systems: nothing to do.
#[cfg(not(unix))]
pub fn lower_this_thread(_nice: i32) {}

/// Puts the calling thread under `SCHED_BATCH` (its nice value stays) if it
/// runs under the default policy: one already under `SCHED_IDLE` (or any
/// other) keeps it, so the policy is never raised. Measured with `make
/// bench-api`: the followers' wake-ups no longer push the API's answers
/// off a core (POST p99 133–205 ms → mostly 37–95 ms on the 2-core
/// machine; README, "API load").
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn batch_policy() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `sched_getscheduler` takes no pointer; `sched_setscheduler`
    // reads the `sched_param` we pass by reference for the duration of the
    // call and keeps no pointer to it. pid 0 is the calling thread, and the
    // non-real-time policies require priority 0. Neither changes memory of
    // this process.
    let result = unsafe {
        if libc::sched_getscheduler(0) != libc::SCHED_OTHER {
            return Ok(());
        }
        libc::sched_setscheduler(0, libc::SCHED_BATCH, &param)
    };
    if result == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}
