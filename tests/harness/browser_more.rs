//! More of the browser for the console's tests: the focused element, and keys pressed like a
//! person at a keyboard (screenshots are in `screens`).

use serde_json::json;

use super::{Browser, Element};

/// The WebDriver code of the Tab key.
const TAB: &str = "\u{E004}";
/// The WebDriver code of the Enter key.
const ENTER: &str = "\u{E007}";

impl Browser {
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
