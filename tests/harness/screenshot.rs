//! Screenshots of pages as test artifacts (`target/screenshots/NAME-WxH.png`), and the
//! browser's console errors (a CSP violation shows there).

use std::path::PathBuf;

use base64::Engine as _;
use serde_json::json;

use super::Browser;

impl Browser {
    /// Resizes the window to `width`×`height`, reloads nothing, and saves a PNG of the
    /// current page under `target/screenshots/`; returns its path.
    pub fn screenshot_at(&self, name: &str, width: u32, height: u32) -> PathBuf {
        self.command(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        );
        let png = self.command("GET", "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("a screenshot is base64 text"))
            .expect("a screenshot is base64");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).expect("create target/screenshots");
        let path = dir.join(format!("{name}-{width}x{height}.png"));
        std::fs::write(&path, bytes).expect("write the screenshot");
        path
    }

    /// The browser console's errors (level SEVERE) since the last call: script errors,
    /// refused resources, CSP violations. The browser's own request for `/favicon.ico`
    /// (which the console does not serve) is not the page's error and is left out.
    pub fn console_errors(&self) -> Vec<String> {
        let entries = self.command("POST", "/se/log", Some(json!({"type": "browser"})));
        entries
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
            .filter(|m| !m.contains("/favicon.ico "))
            .collect()
    }
}
