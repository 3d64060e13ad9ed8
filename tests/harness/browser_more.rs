//! More of the browser for the console's tests: window sizes and screenshots (saved as test
//! artifacts), the focused element, and keys pressed like a person at a keyboard.

use std::path::PathBuf;

use base64::Engine as _;
use serde_json::json;

use super::{Browser, Element};

/// The WebDriver code of the Tab key.
const TAB: &str = "\u{E004}";
/// The WebDriver code of the Enter key.
const ENTER: &str = "\u{E007}";

impl Browser {
    /// Resizes the window to `width` × `height` CSS pixels.
    pub fn window_size(&self, width: u32, height: u32) {
        self.command(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        );
    }

    /// Saves a PNG of the page at 1280×800 and at 390×844 (a phone) as
    /// `target/screenshots/<name>-<width>.png`, and leaves the window at 1280×800.
    pub fn screenshots(&self, name: &str) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).expect("create target/screenshots");
        for (w, h) in [(390, 844), (1280, 800)] {
            self.window_size(w, h);
            let shot = self.command("GET", "/screenshot", None);
            let png = base64::engine::general_purpose::STANDARD
                .decode(shot.as_str().unwrap_or_default())
                .expect("a screenshot is base64");
            std::fs::write(dir.join(format!("{name}-{w}.png")), png).expect("save screenshot");
        }
    }

    /// Empties the input `element`.
    pub fn clear(&self, element: &Element) {
        self.command("POST", &format!("/element/{}/clear", element.0), None);
    }

    /// The `id` of the element that has the keyboard focus.
    pub fn focused_id(&self) -> String {
        let active = self.command("GET", "/element/active", None);
        let element = active
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(|v| v.as_str())
            .map(|id| Element(id.to_string()));
        element
            .and_then(|e| self.attribute(&e, "id"))
            .unwrap_or_default()
    }

    /// Presses Tab until the element `id` has the focus (at most `limit` presses), then
    /// Enter: what a person without a mouse does. Panics when the element is not reached.
    pub fn tab_to_and_press_enter(&self, id: &str, limit: usize) {
        for _ in 0..limit {
            self.keys(TAB);
            if self.focused_id() == id {
                self.keys(ENTER);
                return;
            }
        }
        panic!("#{id} is not reached with {limit} presses of Tab");
    }

    /// Types `keys` into whatever has the focus.
    fn keys(&self, keys: &str) {
        let actions: Vec<serde_json::Value> = keys
            .chars()
            .flat_map(|c| {
                [
                    json!({"type": "keyDown", "value": c.to_string()}),
                    json!({"type": "keyUp", "value": c.to_string()}),
                ]
            })
            .collect();
        self.command(
            "POST",
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        );
    }
}
