//! Local execution: `sh -c COMMAND` on the daemon's own machine, for `transport: local`
//! hosts. Blocking: call from a blocking thread; the child is waited on through tokio so
//! the deadline and cancellation can kill it.

use std::process::Stdio;
use std::time::Duration;

use super::{into_text, ExecError, ShOutput, Stop, MAX_OUTPUT};

/// Runs `command` with `sh -c`, killing it at the deadline or on cancellation. The
/// variables in `hidden` (the daemon's secret sources) are removed from the child's
/// environment: a secret is only reachable through `secret()`, which checks the scope.
pub fn run(
    rt: &tokio::runtime::Handle,
    command: &str,
    hidden: &[String],
    stop: &Stop<'_>,
) -> Result<ShOutput, ExecError> {
    rt.block_on(async {
        let mut cmd = tokio::process::Command::new("sh");
        for var in hidden {
            cmd.env_remove(var);
        }
        let mut child = cmd
            .arg("-c")
            .arg(command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ExecError::Io(format!("cannot start sh: {e}")))?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let read = |pipe: Option<tokio::process::ChildStdout>| async move {
            use tokio::io::AsyncReadExt;
            let mut buf = Vec::new();
            if let Some(p) = pipe {
                let _ = p.take(MAX_OUTPUT as u64 + 1).read_to_end(&mut buf).await;
            }
            buf
        };
        let read_err = |pipe: Option<tokio::process::ChildStderr>| async move {
            use tokio::io::AsyncReadExt;
            let mut buf = Vec::new();
            if let Some(p) = pipe {
                let _ = p.take(MAX_OUTPUT as u64 + 1).read_to_end(&mut buf).await;
            }
            buf
        };
        let work = async {
            let (out, err, status) = tokio::join!(read(stdout), read_err(stderr), child.wait());
            (out, err, status)
        };
        tokio::pin!(work);
        loop {
            tokio::select! {
                (out, err, status) = &mut work => {
                    let status = status.map_err(|e| ExecError::Io(e.to_string()))?;
                    let code = status.code().unwrap_or(-1) as i64;
                    let cut = |mut b: Vec<u8>| { let t = b.len() > MAX_OUTPUT; b.truncate(MAX_OUTPUT); into_text(b, t) };
                    return Ok(ShOutput { code, stdout: cut(out), stderr: cut(err) });
                }
                _ = tokio::time::sleep(Duration::from_millis(50)) => {
                    if let Some(e) = stop.check(command) {
                        // Dropping `work` drops the child, which kills it (kill_on_drop).
                        return Err(e);
                    }
                }
            }
        }
    })
}
