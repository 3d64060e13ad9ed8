//! A temp folder holding `tandem.yaml`, `runbooks/` and the state, and runs of the real
//! binary in it.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use tempfile::TempDir;

use super::poll;

/// The binary under test.
pub const TANDEM: &str = env!("CARGO_BIN_EXE_tandem");

/// How long one run of the binary may take before the test fails, unless it says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Environment variables that would point a run at the developer's own server.
const ISOLATED_VARS: [&str; 2] = ["TANDEM_SERVER", "TANDEM_TOKEN"];

/// A temp folder for one test: `tandem.yaml`, `runbooks/`, and whatever state the runs
/// leave. Removed on drop.
pub struct Env {
    dir: TempDir,
}

impl Env {
    /// An empty env with a `runbooks/` folder and no config yet.
    pub fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("tandem-test-")
            .tempdir()
            .expect("create temp dir");
        std::fs::create_dir(dir.path().join("runbooks")).expect("create runbooks/");
        Env { dir }
    }

    /// The env's folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `<env>/tandem.yaml`, passed to every run as `--config`.
    pub fn config_path(&self) -> PathBuf {
        self.path().join("tandem.yaml")
    }

    /// Writes `contents` to `relative` inside the env, creating folders; returns the path.
    pub fn write(&self, relative: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path().join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent folders");
        }
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// Reads a file inside the env.
    pub fn read(&self, relative: impl AsRef<Path>) -> String {
        let path = self.path().join(relative);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    /// Writes `tandem.yaml` exactly as given.
    pub fn write_config(&self, yaml: &str) -> PathBuf {
        self.write("tandem.yaml", yaml)
    }

    /// Writes `runbooks/<file_name>` exactly as given.
    pub fn write_runbook(&self, file_name: &str, yaml: &str) -> PathBuf {
        self.write(Path::new("runbooks").join(file_name), yaml)
    }

    /// A run of the binary with `--config <env>/tandem.yaml`, in the env's folder.
    pub fn command(&self) -> Tandem<'_> {
        Tandem {
            env: self,
            args: Vec::new(),
            vars: Vec::new(),
            stdin: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Runs the binary with `args` and returns how it ended.
    pub fn tandem<I, S>(&self, args: I) -> Outcome
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command().args(args).run()
    }
}

/// One run of the binary being set up; [`Tandem::run`] runs it.
#[must_use = "a Tandem does nothing until run() is called"]
pub struct Tandem<'e> {
    env: &'e Env,
    args: Vec<OsString>,
    vars: Vec<(OsString, OsString)>,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
}

impl Tandem<'_> {
    /// Adds one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for the run.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.vars
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Feeds `input` on standard input (otherwise it is empty).
    pub fn stdin(mut self, input: impl AsRef<[u8]>) -> Self {
        self.stdin = Some(input.as_ref().to_vec());
        self
    }

    /// How long the run may take before it is killed and the test fails (default 60 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs the binary to its end and returns its status and output.
    pub fn run(self) -> Outcome {
        let mut command = Command::new(TANDEM);
        command
            .arg("--config")
            .arg(self.env.config_path())
            .args(&self.args)
            .current_dir(self.env.path())
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for var in ISOLATED_VARS {
            command.env_remove(var);
        }
        command.envs(self.vars.iter().map(|(k, v)| (k, v)));
        let shown = format!("tandem {}", shell_words(&self.args));
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {shown}: {e}"));
        if let (Some(input), Some(mut pipe)) = (self.stdin, child.stdin.take()) {
            // Written on a thread so a child that does not read cannot block the test. A
            // child that exits without reading closes the pipe; its status tells the test.
            std::thread::spawn(move || {
                let _ = pipe.write_all(&input);
            });
        }
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        let status = poll(self.timeout, || child.try_wait().expect("wait for tandem"));
        let timed_out = status.is_none();
        if timed_out {
            kill(&mut child);
        }
        let outcome = Outcome {
            command: shown,
            code: status.and_then(|s| s.code()),
            stdout: join(stdout),
            stderr: join(stderr),
        };
        if timed_out {
            panic!(
                "{} did not finish within {:?}\n{}",
                outcome.command,
                self.timeout,
                outcome.dump()
            );
        }
        outcome
    }
}

/// Reads a child's pipe to its end on a thread, so a full pipe never blocks the child.
fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn join(reader: JoinHandle<String>) -> String {
    reader.join().expect("pipe reader thread")
}

/// Kills and reaps a child the test no longer wants.
pub(super) fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Arguments as a user would type them, for messages.
fn shell_words(args: &[OsString]) -> String {
    let words: Vec<String> = args
        .iter()
        .map(|a| {
            let a = a.to_string_lossy();
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '\'') {
                format!("{a:?}")
            } else {
                a.into_owned()
            }
        })
        .collect();
    words.join(" ")
}

/// How a run of the binary ended. The asserting helpers panic with the whole output.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The command as typed (without `--config`).
    pub command: String,
    /// The exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// The command, its exit code and both outputs, for failure messages.
    pub fn dump(&self) -> String {
        format!(
            "command: {}\nexit code: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.code, self.stdout, self.stderr
        )
    }

    /// Asserts the exit code.
    pub fn status(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "unexpected exit code\n{}",
            self.dump()
        );
        self
    }

    /// Asserts exit code 0.
    pub fn success(&self) -> &Self {
        self.status(0)
    }

    /// Asserts that standard output contains `text`.
    pub fn stdout_contains(&self, text: &str) -> &Self {
        assert!(
            self.stdout.contains(text),
            "stdout lacks {text:?}\n{}",
            self.dump()
        );
        self
    }

    /// Asserts that standard output does not contain `text`.
    pub fn stdout_lacks(&self, text: &str) -> &Self {
        assert!(
            !self.stdout.contains(text),
            "stdout contains {text:?}\n{}",
            self.dump()
        );
        self
    }

    /// Asserts that standard error contains `text`.
    pub fn stderr_contains(&self, text: &str) -> &Self {
        assert!(
            self.stderr.contains(text),
            "stderr lacks {text:?}\n{}",
            self.dump()
        );
        self
    }

    /// Asserts that standard error does not contain `text`.
    pub fn stderr_lacks(&self, text: &str) -> &Self {
        assert!(
            !self.stderr.contains(text),
            "stderr contains {text:?}\n{}",
            self.dump()
        );
        self
    }

    /// Asserts that neither output contains `text` (e.g. a secret value).
    pub fn output_lacks(&self, text: &str) -> &Self {
        self.stdout_lacks(text).stderr_lacks(text)
    }

    /// Standard output parsed as JSON (for `--json`).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON: {e}\n{}", self.dump()))
    }
}
