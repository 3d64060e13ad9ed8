//! Waiting for a condition, never for a fixed time.

use std::time::{Duration, Instant};

/// How often a condition is checked.
const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Checks `probe` every 25 ms until it returns `Some`, for at most `timeout`. `None` when
/// the deadline passed first, so the caller can clean up before it fails.
pub fn poll<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Polls `probe` until it returns `Some` and returns that value; panics naming `what` when
/// `timeout` passes first.
pub fn wait_for<T>(timeout: Duration, what: &str, probe: impl FnMut() -> Option<T>) -> T {
    poll(timeout, probe).unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// Polls `condition` until it holds; panics naming `what` when `timeout` passes first.
pub fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    wait_for(timeout, what, || condition().then_some(()))
}
