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

/// Bytes kept of one stream of one command; the rest is dropped with a marker, so a command
/// that prints gigabytes cannot exhaust the daemon's memory.
pub const MAX_OUTPUT: usize = 4 * 1024 * 1024;

fn push_capped(buf: &mut Vec<u8>, data: &[u8], truncated: &mut bool) {
    let room = MAX_OUTPUT.saturating_sub(buf.len());
    if data.len() > room {
        *truncated = true;
    }
    buf.extend_from_slice(&data[..data.len().min(room)]);
}

fn into_text(buf: Vec<u8>, truncated: bool) -> String {
    let mut s = String::from_utf8_lossy(&buf).into_owned();
    if truncated {
        s.push_str("\n[output truncated]");
    }
    s
}
