//! A real headless Chromium driven over WebDriver: `chromedriver --port=N` and one session,
//! for tests of the pages people use. Closed on drop.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`/usr/bin/chromium`,
//! `/usr/bin/chromedriver`); `scripts/test` installs them.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::blocking::Client;
use serde_json::{json, Value};

use super::env::kill;
use super::{poll, wait_for};

/// The browser binary.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// The WebDriver server for it.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The key under which WebDriver returns an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long chromedriver may take to come up, and a session to start.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one WebDriver command may take (a navigation waits for the page to load).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Chromium's flags: headless, no sandbox (tests run as root), and nothing that reaches
/// out to the network on its own.
const CHROMIUM_ARGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
];

/// An element found on the current page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element(pub(super) String);

/// A chromedriver process and one browser session in it.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    client: Client,
}

impl Browser {
    /// Whether Chromium and chromedriver are installed.
    pub fn available() -> bool {
        Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists()
    }

    /// Starts chromedriver on a free port and a headless Chromium session in it.
    pub fn start() -> Browser {
        assert!(
            Browser::available(),
            "{CHROMIUM} and {CHROMEDRIVER} are needed: apt-get install chromium chromium-driver \
             (scripts/test does)"
        );
        let client = Client::builder()
            .timeout(COMMAND_TIMEOUT)
            .build()
            .expect("build WebDriver client");
        // A port freed just before chromedriver takes it can be taken by someone else in
        // between; then chromedriver exits and another port is tried.
        let mut last_error = String::new();
        for _ in 0..3 {
            let port = free_port();
            let mut driver = Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {CHROMEDRIVER}: {e}"));
            let base = format!("http://127.0.0.1:{port}");
            let ready = poll(START_TIMEOUT, || {
                if let Ok(Some(status)) = driver.try_wait() {
                    return Some(Err(format!("chromedriver exited with {status}")));
                }
                let status = client.get(format!("{base}/status")).send().ok()?;
                let body: Value = status.json().ok()?;
                (body["value"]["ready"] == true).then_some(Ok(()))
            });
            match ready {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    last_error = e;
                    kill(&mut driver);
                    continue;
                }
                None => {
                    kill(&mut driver);
                    panic!("chromedriver on port {port} not ready within {START_TIMEOUT:?}");
                }
            }
            let capabilities = json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": CHROMIUM, "args": CHROMIUM_ARGS},
            }}});
            let created = client
                .post(format!("{base}/session"))
                .timeout(START_TIMEOUT)
                .json(&capabilities)
                .send()
                .and_then(|r| r.json::<Value>());
            let session = match created {
                Ok(body) => match body["value"]["sessionId"].as_str() {
                    Some(id) => id.to_string(),
                    None => {
                        kill(&mut driver);
                        panic!("chromedriver did not start a session: {body}");
                    }
                },
                Err(e) => {
                    kill(&mut driver);
                    panic!("chromedriver did not start a session: {e}");
                }
            };
            return Browser {
                driver,
                base,
                session,
                client,
            };
        }
        panic!("chromedriver did not start: {last_error}");
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}/session/{}{path}", self.base, self.session)
    }

    /// Sends one WebDriver command and returns its `value`; panics on a WebDriver error.
    pub(crate) fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = self.endpoint(path);
        let request = match method {
            "GET" => self.client.get(&url),
            "DELETE" => self.client.delete(&url),
            _ => self
                .client
                .post(&url)
                .json(&body.unwrap_or_else(|| json!({}))),
        };
        let response = request
            .send()
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let status = response.status().as_u16();
        let body: Value = response
            .json()
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: answer is not JSON: {e}"));
        assert!(
            status < 400,
            "WebDriver {method} {path} failed with {status}: {}",
            body["value"]
        );
        body["value"].clone()
    }

    /// Opens `url` and waits for the page to load.
    pub fn navigate(&self, url: &str) {
        self.command("POST", "/url", Some(json!({"url": url})));
    }

    /// The address of the page shown now.
    pub fn current_url(&self) -> String {
        self.command("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The page's HTML as the browser holds it now.
    pub fn page_source(&self) -> String {
        self.command("GET", "/source", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Every element matching the CSS selector `css` on the current page.
    pub fn find_all(&self, css: &str) -> Vec<Element> {
        let found = self.command(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        );
        found
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e[ELEMENT_KEY].as_str())
            .map(|id| Element(id.to_string()))
            .collect()
    }

    /// The first element matching `css`; panics when there is none within `timeout`.
    pub fn find(&self, css: &str) -> Element {
        self.wait_find(css, Duration::from_secs(10))
    }

    /// Waits until an element matches `css` and returns the first.
    pub fn wait_find(&self, css: &str, timeout: Duration) -> Element {
        wait_for(timeout, &format!("an element matching `{css}`"), || {
            self.find_all(css).into_iter().next()
        })
    }

    /// Types `text` into `element`.
    pub fn send_keys(&self, element: &Element, text: &str) {
        self.command(
            "POST",
            &format!("/element/{}/value", element.0),
            Some(json!({"text": text})),
        );
    }

    /// Clicks `element`.
    pub fn click(&self, element: &Element) {
        self.command("POST", &format!("/element/{}/click", element.0), None);
    }

    /// The rendered text of `element`.
    pub fn text(&self, element: &Element) -> String {
        self.command("GET", &format!("/element/{}/text", element.0), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The value of `element`'s attribute `name`, if set.
    pub fn attribute(&self, element: &Element, name: &str) -> Option<String> {
        self.command(
            "GET",
            &format!("/element/{}/attribute/{name}", element.0),
            None,
        )
        .as_str()
        .map(str::to_string)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session closes Chromium; then chromedriver itself goes.
        let _ = self
            .client
            .delete(format!("{}/session/{}", self.base, self.session))
            .send();
        kill(&mut self.driver);
    }
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free port")
}
