//! More of the browser for the console's tests: the focused element, keys pressed like a
//! person at a keyboard, scripts run in the page to read it, and a walk of a page with Tab
//! (screenshots are in `screens`).

use serde_json::{json, Value};

use super::{Browser, Element};

/// The WebDriver code of the Tab key.
pub const TAB: &str = "\u{E004}";
/// The WebDriver code of the Enter key.
pub const ENTER: &str = "\u{E007}";
/// The WebDriver code of the space bar.
pub const SPACE: &str = " ";

/// The key under which WebDriver returns an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One element the focus reached in a walk with Tab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FocusStop {
    /// Where it is in the document (its chain of tags and positions): the same element
    /// gives the same key in [`Browser::actionable`].
    pub key: String,
    /// How a person reading a report would find it: tag, id, text.
    pub shown: String,
    /// Its accessible name, as Chromium's accessibility tree computes it.
    pub name: String,
    /// Whether the focus is drawn (an outline or a box shadow) while it has it.
    pub drawn: bool,
}

/// A script function that describes element `e`: `[key, shown]`, or null for the page
/// itself (the focus left the controls).
const DESCRIBE: &str = "function describe(e) {\
  if (!e || e === document.body || e === document.documentElement) { return null; }\
  var path = [];\
  for (var n = e; n && n !== document.documentElement; n = n.parentElement) {\
    var i = 1;\
    for (var s = n.previousElementSibling; s; s = s.previousElementSibling) { i++; }\
    path.unshift(n.tagName.toLowerCase() + ':' + i);\
  }\
  var text = (e.innerText || e.value || '').trim().replace(/\\s+/g, ' ').slice(0, 40);\
  var shown = e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.name ? '[name=' + e.name + ']' : '') + (text ? ' \"' + text + '\"' : '');\
  return [path.join('>'), shown];\
}";

impl Browser {
    /// Empties the input `element`.
    pub fn clear(&self, element: &Element) {
        self.command("POST", &format!("/element/{}/clear", element.0), None);
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page and returns
    /// what it returns.
    pub fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// The element that has the keyboard focus.
    pub fn focused(&self) -> Element {
        let active = self.command("GET", "/element/active", None);
        let id = active[ELEMENT_KEY].as_str().unwrap_or_default();
        Element(id.to_string())
    }

    /// The `id` of the element that has the keyboard focus.
    pub fn focused_id(&self) -> String {
        let focused = self.focused();
        self.attribute(&focused, "id").unwrap_or_default()
    }

    /// `element`'s accessible name, from Chromium's accessibility tree.
    pub fn accessible_name(&self, element: &Element) -> String {
        self.command(
            "GET",
            &format!("/element/{}/computedlabel", element.0),
            None,
        )
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// Presses Tab until the element `id` has the focus (at most `limit` presses). Panics
    /// when it is not reached.
    pub fn tab_to(&self, id: &str, limit: usize) {
        for _ in 0..limit {
            self.press(TAB);
            if self.focused_id() == id {
                return;
            }
        }
        panic!("#{id} is not reached with {limit} presses of Tab");
    }

    /// Presses Tab until the element `id` has the focus (at most `limit` presses), then
    /// Enter: what a person without a mouse does. Panics when the element is not reached.
    pub fn tab_to_and_press_enter(&self, id: &str, limit: usize) {
        self.tab_to(id, limit);
        self.press(ENTER);
    }

    /// Types `keys` into whatever has the focus, one key at a time ([`TAB`], [`ENTER`] and
    /// [`SPACE`] included).
    pub fn press(&self, keys: &str) {
        let actions: Vec<Value> = keys
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

    /// Walks the current page with Tab from its top until the focus comes round (or leaves
    /// the page): every element reached, in order. Panics past `limit` presses.
    pub fn tab_walk(&self, limit: usize) -> Vec<FocusStop> {
        // From the top: nothing focused, as on a page just opened.
        self.execute(
            "if (document.activeElement) { document.activeElement.blur(); } window.scrollTo(0, 0);",
            vec![],
        );
        let describe_focused = format!(
            "{DESCRIBE} var e = document.activeElement; var d = describe(e); if (!d) {{ return null; }}\
             var st = getComputedStyle(e);\
             var drawn = (st.outlineStyle !== 'none' && parseFloat(st.outlineWidth) > 0) || st.boxShadow !== 'none';\
             return [d[0], d[1], drawn];"
        );
        // Round again: nothing focused, so a screenshot shows no focused skip link.
        let done = |stops: Vec<FocusStop>| {
            self.execute(
                "if (document.activeElement) { document.activeElement.blur(); }",
                vec![],
            );
            stops
        };
        let mut stops: Vec<FocusStop> = Vec::new();
        for _ in 0..limit {
            self.press(TAB);
            let d = self.execute(&describe_focused, vec![]);
            let Some(d) = d.as_array() else {
                if stops.is_empty() {
                    continue;
                }
                return done(stops);
            };
            let key = d[0].as_str().unwrap_or_default().to_string();
            if stops.first().is_some_and(|f| f.key == key) {
                return done(stops);
            }
            // One element may take several stops (a date field's day, month, year and
            // picker, whose focus Chromium draws itself): one stop, drawn if any was.
            if let Some(last) = stops.last_mut().filter(|l| l.key == key) {
                last.drawn |= d[2] == true;
                continue;
            }
            let name = self.accessible_name(&self.focused());
            stops.push(FocusStop {
                key,
                shown: d[1].as_str().unwrap_or_default().to_string(),
                name,
                drawn: d[2] == true,
            });
        }
        panic!("the focus did not come round in {limit} presses of Tab: {stops:#?}");
    }

    /// Every element of the current page a person acts on (a link, a button, a field that is
    /// not hidden, a select, a text area, a summary) that is shown: `(key, shown)` as in
    /// [`FocusStop`]. What a closed `<details>` holds is not shown until it is opened.
    pub fn actionable(&self) -> Vec<(String, String)> {
        let script = format!(
            "{DESCRIBE} var out = [];\
             document.querySelectorAll('a[href], button, input:not([type=hidden]), select, textarea, summary').forEach(function (e) {{\
               if (e.checkVisibility() && !e.disabled) {{ out.push(describe(e)); }}\
             }});\
             return out;"
        );
        self.execute(&script, vec![])
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                (
                    d[0].as_str().unwrap_or_default().to_string(),
                    d[1].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }
}
