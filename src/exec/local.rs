//! Local execution: `sh -c COMMAND` on the daemon's own machine, for `transport: local`
//! hosts. Blocking: call from a blocking thread; the child is driven through tokio so the
//! deadline and cancellation can kill it.

use std::process::Stdio;

use tokio::io::AsyncReadExt;

use super::{ExecError, OutputSink, Stop, Stream, IDLE_TICK};

/// Runs `command` with `sh -c`, handing its output to `sink` as it arrives, killing it at
/// the deadline or on cancellation; returns its exit code. The variables in `hidden` (the
/// daemon's secret sources) are removed from the child's environment: a secret is only
/// reachable through `secret()`, which checks the scope.
pub fn run(
    rt: &tokio::runtime::Handle,
    command: &str,
    hidden: &[String],
    stop: &Stop<'_>,
    sink: &mut dyn OutputSink,
) -> Result<i64, ExecError> {
    rt.block_on(async {
        let mut cmd = tokio::process::Command::new("sh");
        for var in hidden {
            cmd.env_remove(var);
        }
        // Dropping `child` on any return kills it (kill_on_drop).
        let mut child = cmd
            .arg("-c")
            .arg(command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ExecError::Io(format!("cannot start sh: {e}")))?;
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let (mut out_buf, mut err_buf) = (vec![0u8; 32 * 1024], vec![0u8; 32 * 1024]);
        let mut status = None;
        let mut tick = tokio::time::interval(IDLE_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Both pipes are read until they close, and the child is waited on: output written
        // by a background process after the child exits still arrives.
        while stdout.is_some() || stderr.is_some() || status.is_none() {
            tokio::select! {
                n = read_some(&mut stdout, &mut out_buf) => match n {
                    Some(n) => sink.data(Stream::Stdout, &out_buf[..n]),
                    None => stdout = None,
                },
                n = read_some(&mut stderr, &mut err_buf) => match n {
                    Some(n) => sink.data(Stream::Stderr, &err_buf[..n]),
                    None => stderr = None,
                },
                s = child.wait(), if status.is_none() => {
                    status = Some(s.map_err(|e| ExecError::Io(e.to_string()))?);
                }
                _ = tick.tick() => {
                    if let Some(e) = stop.check(command) {
                        return Err(e);
                    }
                    sink.idle();
                }
            }
        }
        Ok(status.and_then(|s| s.code()).unwrap_or(-1) as i64)
    })
}

/// Reads what is there from `pipe`: `Some(n)` bytes, `None` at its end (or when there is
/// no pipe, in which case it never resolves).
async fn read_some<R: tokio::io::AsyncRead + Unpin>(
    pipe: &mut Option<R>,
    buf: &mut [u8],
) -> Option<usize> {
    match pipe {
        Some(p) => match p.read(buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(n),
        },
        None => std::future::pending().await,
    }
}
