//! Small inline SVG charts of our own: no chart service, no script, no inline style (the
//! console's CSP forbids it), only presentation attributes and classes.

use crate::server::web::esc;

/// One bar: its label (shown on hover as the bar's title), its value (`None`: nothing was
/// measured, drawn as a mark on the axis) and whether it stands for a success.
#[derive(Debug, Clone)]
pub struct Bar {
    pub label: String,
    pub value: Option<f64>,
    pub ok: bool,
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 180.0;
const LEFT: f64 = 64.0;
const BOTTOM: f64 = 24.0;
const TOP: f64 = 12.0;

/// A bar chart over time (oldest left), its axis labelled with `unit`: `format(max)` at the
/// top, 0 at the bottom. `title` is the chart's accessible name.
pub fn bars(title: &str, bars: &[Bar], format: impl Fn(f64) -> String) -> String {
    let max = bars.iter().filter_map(|b| b.value).fold(0.0_f64, f64::max);
    let plot_w = WIDTH - LEFT - 8.0;
    let plot_h = HEIGHT - BOTTOM - TOP;
    let slot = plot_w / bars.len().max(1) as f64;
    let bar_w = (slot * 0.7).clamp(1.0, 40.0);
    let mut out = format!(
        "<svg class=\"chart\" role=\"img\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" xmlns=\"http://www.w3.org/2000/svg\"><title>{}</title>",
        esc(title)
    );
    let base = TOP + plot_h;
    out.push_str(&format!(
        "<line x1=\"{LEFT}\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\" stroke=\"#555\" stroke-width=\"1\"/>\
<line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{base}\" stroke=\"#555\" stroke-width=\"1\"/>",
        WIDTH - 8.0
    ));
    out.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"11\" fill=\"#333\">{}</text>\
<text x=\"{}\" y=\"{base}\" text-anchor=\"end\" font-size=\"11\" fill=\"#333\">0</text>",
        LEFT - 4.0,
        TOP + 8.0,
        esc(&format(max)),
        LEFT - 4.0,
    ));
    for (i, b) in bars.iter().enumerate() {
        let x = LEFT + slot * i as f64 + (slot - bar_w) / 2.0;
        let (class, fill) = if b.ok {
            ("bar ok", "#2e7d32")
        } else {
            ("bar bad", "#c62828")
        };
        let tip = format!(
            "{}: {}",
            b.label,
            b.value.map_or("not measured".to_string(), &format)
        );
        match b.value {
            Some(v) if max > 0.0 => {
                let h = (v / max * plot_h).max(1.0);
                out.push_str(&format!(
                    "<rect class=\"{class}\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar_w:.1}\" height=\"{h:.1}\" fill=\"{fill}\"><title>{}</title></rect>",
                    base - h,
                    esc(&tip)
                ));
            }
            _ => {
                // Nothing measured (a failed test): a mark below the axis.
                out.push_str(&format!(
                    "<rect class=\"{class}\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar_w:.1}\" height=\"6\" fill=\"{fill}\"><title>{}</title></rect>",
                    base + 2.0,
                    esc(&tip)
                ));
            }
        }
    }
    if let (Some(first), Some(last)) = (bars.first(), bars.last()) {
        let y = HEIGHT - 4.0;
        out.push_str(&format!(
            "<text x=\"{LEFT}\" y=\"{y}\" font-size=\"11\" fill=\"#333\">{}</text>\
<text x=\"{}\" y=\"{y}\" text-anchor=\"end\" font-size=\"11\" fill=\"#333\">{}</text>",
            esc(first.label.split(' ').next().unwrap_or_default()),
            WIDTH - 8.0,
            esc(last.label.split(' ').next().unwrap_or_default()),
        ));
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_are_scaled_to_the_largest_and_a_missing_value_is_marked() {
        let svg = bars(
            "restore <time>",
            &[
                Bar {
                    label: "2026-12-01 a".into(),
                    value: Some(50.0),
                    ok: true,
                },
                Bar {
                    label: "2026-12-02 b".into(),
                    value: Some(100.0),
                    ok: true,
                },
                Bar {
                    label: "2026-12-03 c".into(),
                    value: None,
                    ok: false,
                },
            ],
            |v| format!("{v} ms"),
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"), "{svg}");
        assert!(svg.contains("<title>restore &lt;time&gt;</title>"), "{svg}");
        // The plot is 144 units high: the largest bar fills it, the other is half of it.
        assert!(svg.contains("height=\"144.0\""), "{svg}");
        assert!(svg.contains("height=\"72.0\""), "{svg}");
        assert!(svg.contains("class=\"bar bad\""), "{svg}");
        assert!(svg.contains("2026-12-03 c: not measured"), "{svg}");
        assert!(
            !svg.contains("style="),
            "no inline style under the CSP: {svg}"
        );
    }
}
