//! Executors: run one action with a deadline. [`ssh`] (ssh2, blocking: call from a blocking
//! thread), [`local`] (a child process on the daemon's machine) and [`http`] (reqwest).
//! Scope checks and audit records are the caller's job; these only do the action.

pub mod http;
pub mod local;
pub mod ssh;

use std::time::Instant;

pub use crate::script::{HttpOutput, ShOutput};

/// Why an action could not be carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    /// The host presented a key other than the pinned one; nothing was sent to it.
    #[error("host key mismatch: expected {expected}, host presented {presented}")]
    HostKeyMismatch { expected: String, presented: String },
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("cancelled")]
    Cancelled,
    #[error("{0}")]
    Io(String),
}

/// Whether an action should give up: its deadline passed or the run was cancelled.
pub struct Stop<'a> {
    pub deadline: Instant,
    pub cancelled: &'a (dyn Fn() -> bool + Sync),
}

impl Stop<'_> {
    /// `Some(error)` when the action must stop now.
    pub fn check(&self, what: &str) -> Option<ExecError> {
        if (self.cancelled)() {
            Some(ExecError::Cancelled)
        } else if Instant::now() >= self.deadline {
            Some(ExecError::Timeout(what.to_string()))
        } else {
            None
        }
    }

    /// Time left before the deadline.
    pub fn remaining(&self) -> std::time::Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// Which of a command's output streams bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    /// The stream's name in the run log.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Where an executor hands a command's output as it arrives, instead of collecting it:
/// the caller bounds, redacts and stores it, so no executor holds a whole output.
pub trait OutputSink {
    /// Bytes the command wrote to `stream`, in order.
    fn data(&mut self, stream: Stream, bytes: &[u8]);
    /// Called when no output arrived for a short while (at most every 50 ms while the
    /// command runs), so buffered output can be flushed to followers.
    fn idle(&mut self) {}
}

/// How often an executor with no output calls [`OutputSink::idle`].
pub const IDLE_TICK: std::time::Duration = std::time::Duration::from_millis(50);

/// Bytes of an HTTP response body kept: a server that answers with gigabytes cannot
/// exhaust the daemon's memory.
pub const MAX_OUTPUT: usize = 4 * 1024 * 1024;
