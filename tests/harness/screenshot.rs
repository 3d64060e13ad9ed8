//! Screenshots of pages as test artifacts: `target/screenshots/NAME-WxH.png`.

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
}
