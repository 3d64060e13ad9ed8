//! Screenshots of console pages as test artifacts (`target/screenshots/NAME-WxH.png` at a
//! desktop and a phone size), and the browser's console errors (a CSP violation shows there).

use std::path::PathBuf;

use base64::Engine as _;
use serde_json::json;

use super::Browser;

/// The sizes every page is saved at: a laptop and a phone.
pub const SCREEN_SIZES: [(u32, u32); 2] = [(1280, 800), (390, 844)];

impl Browser {
    /// Resizes the browser window.
    pub fn set_window(&self, width: u32, height: u32) {
        self.command(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        );
    }

    /// Saves the current page at each of [`SCREEN_SIZES`] under `target/screenshots/`, then
    /// goes back to the desktop size. Returns the files written.
    pub fn save_screens(&self, name: &str) -> Vec<PathBuf> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).expect("create target/screenshots");
        let mut out = Vec::new();
        for (w, h) in SCREEN_SIZES {
            self.set_window(w, h);
            let shot = self.command("GET", "/screenshot", None);
            let png = base64::engine::general_purpose::STANDARD
                .decode(shot.as_str().unwrap_or_default())
                .expect("screenshot is base64");
            assert!(png.starts_with(b"\x89PNG"), "screenshot is not a PNG");
            let path = dir.join(format!("{name}-{w}x{h}.png"));
            std::fs::write(&path, png).expect("write screenshot");
            out.push(path);
        }
        self.set_window(SCREEN_SIZES[0].0, SCREEN_SIZES[0].1);
        out
    }

    /// The browser console's errors (level SEVERE) since the last call: script errors,
    /// refused resources, CSP violations (every page names an empty icon, so the browser asks
    /// for no `/favicon.ico`).
    pub fn console_errors(&self) -> Vec<String> {
        let entries = self.command("POST", "/se/log", Some(json!({"type": "browser"})));
        entries
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}
