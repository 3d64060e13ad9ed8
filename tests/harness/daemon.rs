//! `tandem serve` on a free port, and a small HTTP client for its API.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder};
use serde_json::Value;

use super::env::{kill, TANDEM};
use super::{poll, Env};

/// How long the daemon may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one HTTP request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The line the daemon prints when it is ready (SPEC §6).
const READY_PREFIX: &str = "listening on http://";

/// A running `tandem serve`, killed on drop.
pub struct Daemon {
    child: Child,
    url: String,
    /// Everything the daemon printed on standard output so far.
    stdout: Arc<Mutex<String>>,
    stderr_path: PathBuf,
    client: Client,
}

impl Daemon {
    /// Starts `tandem --config <env>/tandem.yaml serve --listen 127.0.0.1:0` and waits until
    /// it prints `listening on http://ADDR`.
    pub fn start(env: &Env) -> Daemon {
        Daemon::start_with(env, &[])
    }

    /// Like [`Daemon::start`], with extra environment variables (e.g. secret sources).
    pub fn start_with(env: &Env, vars: &[(&str, &str)]) -> Daemon {
        // Each start appends to the same log, so a restarted daemon's story is in one place.
        let stderr_path = env.path().join("daemon.stderr.log");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr_path)
            .expect("open daemon log");
        let mut child = Command::new(TANDEM)
            .arg("--config")
            .arg(env.config_path())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .current_dir(env.path())
            .env_remove("TANDEM_SERVER")
            .env_remove("TANDEM_TOKEN")
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn tandem serve: {e}"));

        // A thread keeps reading standard output for the daemon's whole life, so the pipe
        // never fills; the address is picked out of what it collected.
        let stdout = Arc::new(Mutex::new(String::new()));
        let pipe = child.stdout.take().expect("piped stdout");
        let collected = Arc::clone(&stdout);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut text = collected.lock().expect("stdout buffer");
                text.push_str(&line);
                text.push('\n');
            }
        });

        let ready = poll(START_TIMEOUT, || {
            let text = stdout.lock().expect("stdout buffer");
            if let Some(line) = text.lines().find(|l| l.starts_with(READY_PREFIX)) {
                let url = line.trim().trim_start_matches("listening on ");
                return Some(Ok(url.trim_end_matches('/').to_string()));
            }
            match child.try_wait() {
                Ok(Some(status)) => Some(Err(format!("exited with {status}"))),
                _ => None,
            }
        });
        let url = match ready {
            Some(Ok(url)) => url,
            other => {
                kill(&mut child);
                let why = match other {
                    Some(Err(why)) => why,
                    _ => format!("did not print `{READY_PREFIX}…` within {START_TIMEOUT:?}"),
                };
                panic!(
                    "tandem serve {why}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    stdout.lock().expect("stdout buffer"),
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            }
        };
        let client = Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("build HTTP client");
        Daemon {
            child,
            url,
            stdout,
            stderr_path,
            client,
        }
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the daemon printed on standard output so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().expect("stdout buffer").clone()
    }

    /// What the daemon logged on standard error so far (all starts in this env).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Kills the daemon with SIGKILL, as a crash would, and reaps it.
    pub fn kill9(&mut self) {
        self.signal("KILL");
        let _ = self.child.wait();
    }

    /// Sends SIGTERM: the daemon should drain and exit 0 (see [`Daemon::wait_exit`]).
    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    /// Waits for the daemon to exit and returns its exit code (`None`: ended by a signal).
    /// Panics when it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let status = poll(timeout, || {
            self.child.try_wait().expect("wait for tandem serve")
        });
        match status {
            Some(status) => status.code(),
            None => panic!(
                "tandem serve still running after {timeout:?}\n{}",
                self.stderr()
            ),
        }
    }

    fn signal(&self, name: &str) {
        // `kill` fails only when the daemon has already exited; its exit status tells the
        // test what happened, so the failure is not reported here.
        Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("run kill: {e}"));
    }

    /// `GET path` with `Authorization: Bearer token` (no header when `token` is empty).
    /// Returns the status and the body as JSON, or as a JSON string when it is not JSON.
    pub fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.send(self.client.get(self.endpoint(path)), token)
    }

    /// `POST path` with a JSON body; see [`Daemon::get`].
    pub fn post(&self, path: &str, token: &str, body: &Value) -> (u16, Value) {
        self.send(self.client.post(self.endpoint(path)).json(body), token)
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}{}", self.url, path)
    }

    fn send(&self, request: RequestBuilder, token: &str) -> (u16, Value) {
        let request = if token.is_empty() {
            request
        } else {
            request.bearer_auth(token)
        };
        let response = request
            .send()
            .unwrap_or_else(|e| panic!("HTTP request to {} failed: {e}", self.url));
        let status = response.status().as_u16();
        let text = response.text().expect("read HTTP body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}
