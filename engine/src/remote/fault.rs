//! Faults a node injects on purpose, for tests only (cargo feature `fault-injection`,
//! which the engine's own tests turn on): a poison image is recognised by its size, so a
//! test can send it through the real client and scheduler.
//!
//! - 13x13: the job panics (the node must answer an input error and keep serving);
//! - 17x17: the job sleeps 2 s without looking at cancellation (a slow, stuck op);
//! - 23x23: the node process aborts (what an out-of-memory kill or a crash in C does).

use std::time::Duration;

/// Runs the fault the image's size asks for, if any; called on the node's worker thread.
pub(crate) fn before_work(width: u32, height: u32) {
    match (width, height) {
        (13, 13) => panic!("injected fault: a 13x13 image panics"),
        (17, 17) => std::thread::sleep(Duration::from_secs(2)),
        (23, 23) => std::process::abort(),
        _ => {}
    }
}
