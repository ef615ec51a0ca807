//! Real-time CPU priority and precise timers for the loader's threads.
//!
//! On a machine shared with the system under test (the local quickstart: sandboxes spinning on the same cores),
//! the kernel's fair scheduler lets a waking loader thread wait for a running sandbox's time slice, 1.5-4 ms here,
//! which shows up as send lag. `SCHED_FIFO` at the lowest real-time priority makes the loader's threads run as soon
//! as they wake; the kernel's real-time throttling (95% of each second by default) still leaves the rest of the
//! system CPU time. Threads created after [`enter`] inherit the policy; child processes must call
//! [`leave_in_child`] so they do not.

use std::io;

/// Puts the calling thread (and the threads it creates afterwards) under `SCHED_FIFO` at priority 1.
pub fn enter() -> io::Result<()> {
    set(libc::SCHED_FIFO, 1)
}

/// [`enter`] if `wanted`, with a warning on stderr when the system refuses (the run goes on at normal priority).
/// Call it before creating the async runtime, so that its threads inherit the policy.
pub fn enter_if(wanted: bool) {
    if wanted && let Err(e) = enter() {
        eprintln!("warning: no real-time priority for the loader ({e}); send lag may grow under CPU contention");
    }
}

/// Returns the calling thread to the normal time-sharing policy. Async-signal-safe: one system call, so it may run
/// in a `pre_exec` hook between `fork` and `exec`.
pub fn leave_in_child() -> io::Result<()> {
    set(libc::SCHED_OTHER, 0)
}

/// Sets the calling thread's timer slack to 1 ns, so its sleeps end when asked rather than up to the default
/// 50 µs later (the kernel groups wake-ups within a thread's slack).
#[allow(unsafe_code)]
pub fn minimal_timer_slack() -> io::Result<()> {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and touches no memory of ours.
    let result = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    if result == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

#[allow(unsafe_code)]
fn set(policy: libc::c_int, priority: libc::c_int) -> io::Result<()> {
    let param = libc::sched_param { sched_priority: priority };
    // SAFETY: `param` is a valid, initialised sched_param that outlives the call; pid 0 is the calling thread.
    let result = unsafe { libc::sched_setscheduler(0, policy, &param) };
    if result == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// The calling thread's scheduling policy (for tests and diagnostics).
#[allow(unsafe_code)]
pub fn current_policy() -> libc::c_int {
    // SAFETY: no arguments besides the calling thread's pid 0; the call has no memory effects.
    unsafe { libc::sched_getscheduler(0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_enters_and_leaves_when_permitted() {
        // Runs on its own thread so the test harness's threads keep their policy.
        std::thread::spawn(|| match enter() {
            Ok(()) => {
                assert_eq!(current_policy(), libc::SCHED_FIFO);
                let child_thread = std::thread::spawn(current_policy).join().unwrap();
                assert_eq!(child_thread, libc::SCHED_FIFO, "threads created afterwards inherit it");
                leave_in_child().unwrap();
                assert_eq!(current_policy(), libc::SCHED_OTHER);
            }
            // Without CAP_SYS_NICE or an RLIMIT_RTPRIO the kernel refuses; the loader then warns and goes on.
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EPERM)),
        })
        .join()
        .unwrap();
    }
}
