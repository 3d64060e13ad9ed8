//! The integration-test harness. Every test drives real parts:
//!
//! - [`Env`]: a temp folder with `tandem.yaml` and `runbooks/` that runs the real binary;
//!   [`Tandem`] is one run being set up, [`Outcome`] how it ended, with asserting helpers.
//! - [`StandardConfig`]: the config most tests share: two parties, five users with known
//!   tokens, and the inventory a test chooses ([`HostSpec`]).
//! - [`Sshd`]: a real OpenSSH server on loopback with generated keys.
//! - [`Daemon`]: `tandem serve` on port 0, with a small HTTP client.
//! - [`wait_until`], [`wait_for`]: the only way to wait: poll a condition against a deadline.

// One harness serves every test module, and each module uses only part of it.
#![allow(dead_code, unused_imports)]

mod config;
mod postgres;
pub use postgres::Postgres;
mod daemon;
mod env;
mod http_stub;
mod smtp_stub;
pub use smtp_stub::*;
mod selftest;
mod sshd;
mod wait;
pub use http_stub::*;
mod browser;
pub use browser::*;
mod browser_more;
pub use browser_more::{FocusStop, ENTER, SPACE, TAB};
mod netns;
pub use netns::*;
mod screens;
pub use screens::SCREEN_SIZES;

pub use config::{config_yaml, token, token_sha256, HostSpec, StandardConfig, PARTIES, USERS};
pub use daemon::Daemon;
pub use env::{Env, Outcome, Tandem};
pub use sshd::{fresh_ed25519_key_line, Sshd};
pub use wait::{poll, wait_for, wait_until};

/// Removes the common leading indentation of `text` and a first line that is blank, so
/// fixtures can be written indented inside the test: `unindent("\n    a:\n      b\n")` is
/// `"a:\n  b\n"`. Only spaces count as indentation; tabs are kept, for tests about tabs.
pub fn unindent(text: &str) -> String {
    let text = text.strip_prefix('\n').unwrap_or(text);
    let indent = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start_matches(' ').len())
        .min()
        .unwrap_or(0);
    let mut out = String::new();
    for line in text.lines() {
        out.push_str(line.get(indent..).unwrap_or("").trim_end_matches(' '));
        out.push('\n');
    }
    // A closing quote on its own indented line leaves one blank line too many.
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}
