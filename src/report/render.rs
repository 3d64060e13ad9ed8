//! A [`Report`] as HTML (a fragment for the console, or a standalone file that prints on
//! A4), as CSV (one fact a row: `section,item,metric,value`) or as JSON.

use std::fmt::Write as _;

use super::chart::{bars, Bar};
use super::Report;
use crate::server::web::esc;

/// The formats `tandem report --format` writes (and `GET /api/v1/report?format=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Html,
    Csv,
    Json,
}

/// Rows shown before a long table folds the rest away (console only: a printed report
/// lists everything).
const SHOWN_ROWS: usize = 25;

/// A duration in words: `45 s`, `12 min`, `3.5 h`, `2.0 d`.
pub fn duration(secs: i64) -> String {
    let s = secs.max(0) as f64;
    if s < 120.0 {
        format!("{secs} s")
    } else if s < 7200.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 172_800.0 {
        format!("{:.1} h", s / 3600.0)
    } else {
        format!("{:.1} d", s / 86400.0)
    }
}

/// A byte count in words.
pub fn bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `one` for 1, `many` otherwise.
fn plural<'a>(n: u64, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

fn opt_duration(secs: Option<i64>) -> String {
    secs.map_or("–".to_string(), duration)
}

fn day(ts: &str) -> &str {
    ts.get(..10).unwrap_or(ts)
}

/// A table named `label` (its scroll box is a region of that name, which a keyboard reaches
/// when the table is wider than the screen): `head` cells, then rows of already-escaped
/// cells. In the console, rows past [`SHOWN_ROWS`] fold into a `<details>` (no script
/// needed); printed, all show.
fn table(id: &str, label: &str, head: &[&str], rows: &[Vec<String>], fold: bool) -> String {
    let label = esc(label);
    let mut h = String::from("<tr>");
    for c in head {
        let _ = write!(h, "<th scope=\"col\">{}</th>", esc(c));
    }
    h.push_str("</tr>");
    let body = |rows: &[Vec<String>]| {
        let mut out = String::new();
        for r in rows {
            out.push_str("<tr>");
            for c in r {
                let _ = write!(out, "<td>{c}</td>");
            }
            out.push_str("</tr>");
        }
        out
    };
    if fold && rows.len() > SHOWN_ROWS {
        let (shown, rest) = rows.split_at(SHOWN_ROWS);
        format!(
            "<div class=\"table-wrap\" role=\"region\" aria-label=\"{label}\"><table id=\"{id}\" aria-label=\"{label}\"><thead>{h}</thead><tbody>{}</tbody></table></div>\
<details><summary>{} more</summary><div class=\"table-wrap\" role=\"region\" aria-label=\"{label}, more\"><table aria-label=\"{label}, more\"><thead>{h}</thead><tbody>{}</tbody></table></div></details>",
            body(shown),
            rest.len(),
            body(rest)
        )
    } else {
        format!(
            "<div class=\"table-wrap\" role=\"region\" aria-label=\"{label}\"><table id=\"{id}\" aria-label=\"{label}\"><thead>{h}</thead><tbody>{}</tbody></table></div>",
            body(rows)
        )
    }
}

/// The report as an HTML fragment (an `<article>`), for the console page (`fold`: long
/// tables fold away) or for a standalone file.
pub fn html_fragment(r: &Report, fold: bool) -> String {
    let mut o = String::from("<article class=\"report\" id=\"report\">");
    let scope = match (&r.viewer, &r.party) {
        (Some(v), Some(p)) if v != p => format!(
            "what <strong>{}</strong> may see that concerns <strong>{}</strong> too",
            esc(v),
            esc(p)
        ),
        (Some(p), _) | (None, Some(p)) => format!("what <strong>{}</strong> may see", esc(p)),
        (None, None) => "the whole estate".to_string(),
    };
    let _ = write!(
        o,
        "<p class=\"report-meta\">Period <strong>{} to {}</strong> (UTC, both days included) · {scope} · made {}</p>",
        r.period.from,
        r.period.to,
        esc(&r.generated_at)
    );
    let checkpoint = match &r.chain.checkpoint {
        Some(c) => format!(
            "The latest signed checkpoint in the log (audit record {}) states that record <strong id=\"checkpoint-seq\">{}</strong> had hash <code class=\"hash\" id=\"checkpoint-head\">{}</code>; signed {} by <code class=\"hash\">{}</code>.",
            c.record_seq,
            c.seq,
            esc(&c.head),
            esc(&c.ts),
            esc(&c.key)
        ),
        None => "The log holds no signed checkpoint yet (<code>tandem audit checkpoint</code> signs one).".to_string(),
    };
    let verified = match (&r.chain.broken, r.chain.checkpoint_in_log) {
        (Some(b), _) => format!(
            "<strong class=\"bad\" id=\"chain-status\">The chain does NOT verify ({}): do not rely on these figures; run <code>tandem audit verify</code>.</strong> ",
            esc(b)
        ),
        (None, Some(false)) => "<strong class=\"bad\" id=\"chain-status\">The log does NOT extend its latest checkpoint: records were changed or removed since it was signed.</strong> ".to_string(),
        (None, Some(true)) => "<span id=\"chain-status\">The chain verified when the report was made, and it extends the checkpoint.</span> ".to_string(),
        (None, None) => "<span id=\"chain-status\">The chain verified when the report was made.</span> ".to_string(),
    };
    let _ = write!(
        o,
        "<section class=\"report-chain\" id=\"report-chain\"><h2>Where these numbers come from</h2>\
<p>Computed from audit records 1 to <strong id=\"head-seq\">{}</strong>, head hash <code class=\"hash\" id=\"head-hash\">{}</code>. {checkpoint} {verified}\
Every figure below can be recomputed from an audit export (<code>tandem audit export</code>), which <code>tandem audit verify --file EXPORT --checkpoint FILE</code> checks against the chain and the checkpoint.</p></section>",
        r.chain.head_seq,
        esc(&r.chain.head_hash),
    );

    // Summary.
    let statuses: Vec<String> = r
        .totals
        .by_status
        .iter()
        .map(|(s, n)| format!("{n} {}", esc(s)))
        .collect();
    let patched_recently = r
        .patch
        .iter()
        .filter(|p| p.days_since.is_some_and(|d| d <= 30))
        .count();
    let _ = write!(
        o,
        "<section id=\"summary\"><h2>Summary</h2><ul class=\"report-summary\">\
<li><strong id=\"runs-finished\">{}</strong> {} ended{}</li>\
<li><strong>{patched_recently}</strong> of {} hosts patched in the last 30 days</li>\
<li>Restore tests: <strong id=\"restore-passed\">{}</strong> of {} passed</li>\
<li><strong>{}</strong> {}, <strong id=\"break-glass-count\">{}</strong> break-glass {} ({} still to review)</li></ul></section>",
        r.totals.runs_finished,
        plural(r.totals.runs_finished, "run", "runs"),
        if statuses.is_empty() { String::new() } else { format!(": {}", statuses.join(", ")) },
        r.patch.len(),
        r.restores.passed,
        r.restores.tests,
        r.incidents.isolations.len(),
        plural(r.incidents.isolations.len() as u64, "isolation", "isolations"),
        r.incidents.break_glass.len(),
        plural(r.incidents.break_glass.len() as u64, "use", "uses"),
        r.incidents.open_reviews,
    );

    // Patch compliance: the least recently patched first.
    let mut patch: Vec<&super::PatchHost> = r.patch.iter().collect();
    patch.sort_by_key(|p| {
        (
            std::cmp::Reverse(p.days_since.unwrap_or(i64::MAX)),
            p.host.clone(),
        )
    });
    let rows: Vec<Vec<String>> = patch
        .iter()
        .map(|p| {
            vec![
                esc(&p.host),
                p.last_patched
                    .as_deref()
                    .map_or("never (in the log)".into(), |t| esc(day(t))),
                p.days_since.map_or("–".into(), |d| d.to_string()),
                p.packages_changed.to_string(),
                p.runs.to_string(),
                p.failed.to_string(),
            ]
        })
        .collect();
    let _ = write!(
        o,
        "<section id=\"patch\"><h2>Patch compliance</h2><p>Hosts targeted by patch runbooks (<code>report: patch</code>): when each was last patched, and the packages changed in the period. Longest unpatched first.</p>{}</section>",
        if rows.is_empty() {
            "<p>No patch runbook targets a host here.</p>".to_string()
        } else {
            table(
                "patch-table",
                "Patch compliance per host",
                &["Host", "Last patched", "Days since", "Packages changed", "Patch runs", "Not patched by a run"],
                &rows,
                fold,
            )
        }
    );

    // Restore tests.
    let rs = &r.restores;
    let rate = rs.pass_rate.map_or("no tests".to_string(), |p| {
        format!("{:.0}% passed", p * 100.0)
    });
    let mut restore = format!(
        "<p><strong>{}</strong> of {} restore tests passed ({rate}); {} failed.</p>",
        rs.passed, rs.tests, rs.failed
    );
    if !rs.samples.is_empty() {
        let label = |s: &super::RestoreSample| format!("{} {}", day(&s.ts), s.host);
        let durations: Vec<Bar> = rs
            .samples
            .iter()
            .map(|s| Bar {
                label: label(s),
                value: s.duration_ms.map(|v| v as f64),
                ok: s.passed,
            })
            .collect();
        let sizes: Vec<Bar> = rs
            .samples
            .iter()
            .map(|s| Bar {
                label: label(s),
                value: s.bytes.map(|v| v as f64),
                ok: s.passed,
            })
            .collect();
        let _ = write!(
            restore,
            "<div class=\"charts\"><figure><figcaption>Restore duration (measured RTO), oldest left; red: failed</figcaption>{}</figure>\
<figure><figcaption>Restored size</figcaption>{}</figure></div>",
            bars("Restore duration over time", &durations, |ms| {
                if ms < 10_000.0 {
                    format!("{:.1} s", ms / 1000.0)
                } else {
                    duration((ms / 1000.0).round() as i64)
                }
            }),
            bars("Restored size over time", &sizes, bytes),
        );
        let rows: Vec<Vec<String>> = rs
            .samples
            .iter()
            .map(|s| {
                vec![
                    esc(&s.ts),
                    esc(&s.host),
                    if s.passed {
                        "passed".into()
                    } else {
                        "<strong class=\"bad\">FAILED</strong>".into()
                    },
                    s.duration_ms.map_or("–".into(), |v| format!("{v} ms")),
                    s.bytes.map_or("–".into(), |v| bytes(v as f64)),
                    esc(&s.run_id),
                ]
            })
            .collect();
        restore.push_str(&table(
            "restore-table",
            "Restore tests",
            &["Ended", "Host", "Result", "Duration", "Size", "Run"],
            &rows,
            fold,
        ));
    }
    let _ = write!(
        o,
        "<section id=\"restores\"><h2>Backup restore tests</h2>{restore}</section>"
    );

    // Incidents.
    let inc = &r.incidents;
    let mut incidents = format!(
        "<p><strong>{}</strong> {}, <strong>{}</strong> break-glass {} (median time to review {}; {} still open), {} frozen.</p>",
        inc.isolations.len(),
        plural(inc.isolations.len() as u64, "isolation", "isolations"),
        inc.break_glass.len(),
        plural(inc.break_glass.len() as u64, "use", "uses"),
        opt_duration(inc.review_median_secs),
        inc.open_reviews,
        plural(inc.freezes, "1 host", &format!("{} hosts", inc.freezes)),
    );
    if !inc.isolations.is_empty() {
        let rows: Vec<Vec<String>> = inc
            .isolations
            .iter()
            .map(|i| {
                vec![
                    esc(&i.ts),
                    esc(&i.runbook),
                    esc(&i.hosts.join(", ")),
                    esc(&i.by),
                    esc(&i.status),
                ]
            })
            .collect();
        incidents.push_str("<h3>Isolations</h3>");
        incidents.push_str(&table(
            "isolation-table",
            "Isolations",
            &["Ended", "Runbook", "Hosts", "Started by", "Outcome"],
            &rows,
            fold,
        ));
    }
    if !inc.break_glass.is_empty() {
        let rows: Vec<Vec<String>> = inc
            .break_glass
            .iter()
            .map(|b| {
                vec![
                    esc(&b.ts),
                    esc(&b.runbook),
                    esc(&b.by),
                    esc(&b.reason),
                    b.review_secs.map_or(
                        "<strong class=\"bad\">not reviewed</strong>".into(),
                        duration,
                    ),
                ]
            })
            .collect();
        incidents.push_str("<h3>Break-glass uses</h3>");
        incidents.push_str(&table(
            "break-glass-table",
            "Break-glass uses",
            &["Started", "Runbook", "By", "Reason", "Time to review"],
            &rows,
            fold,
        ));
    }
    let _ = write!(
        o,
        "<section id=\"incidents\"><h2>Incidents</h2>{incidents}</section>"
    );

    // Approvals.
    let rows: Vec<Vec<String>> = r
        .approvals
        .iter()
        .map(|a| {
            vec![
                esc(&a.party),
                a.requested.to_string(),
                a.granted.to_string(),
                a.denied.to_string(),
                a.expired.to_string(),
                opt_duration(a.median_secs),
                opt_duration(a.p90_secs),
            ]
        })
        .collect();
    let _ = write!(
        o,
        "<section id=\"approvals\"><h2>Approvals</h2><p>Per party asked to approve: requests, decisions, expiries, and the time from request to the party's decision.</p>{}</section>",
        if rows.is_empty() {
            "<p>No approvals in the period.</p>".into()
        } else {
            table(
                "approval-table",
                "Approvals per party",
                &["Party", "Asked", "Granted", "Denied", "Expired", "Median time to decision", "90th percentile"],
                &rows,
                fold,
            )
        }
    );

    // Failures.
    let rows: Vec<Vec<String>> = r
        .failures_by_runbook
        .iter()
        .map(|f| {
            vec![
                esc(&f.runbook),
                f.runs.to_string(),
                f.succeeded.to_string(),
                f.failed.to_string(),
                f.other.to_string(),
            ]
        })
        .collect();
    let mut failures = if rows.is_empty() {
        "<p>No run ended in the period.</p>".to_string()
    } else {
        let head = [
            "Runbook",
            "Runs ended",
            "Succeeded",
            "Failed",
            "Other (cancelled, interrupted, denied, expired)",
        ];
        format!(
            "<h3>By runbook</h3>{}",
            table(
                "runbook-table",
                "Runs and failures by runbook",
                &head,
                &rows,
                fold
            )
        )
    };
    if r.failures_by_host.is_empty() {
        failures.push_str("<p>No host failed.</p>");
    } else {
        let rows: Vec<Vec<String>> = r
            .failures_by_host
            .iter()
            .map(|f| {
                vec![
                    esc(&f.host),
                    f.failed.to_string(),
                    esc(&f.runbooks.join(", ")),
                ]
            })
            .collect();
        failures.push_str(&table(
            "host-failure-table",
            "Failures by host",
            &["Host", "Failed", "Runbooks"],
            &rows,
            fold,
        ));
    }
    let _ = write!(o, "<section id=\"failures\"><h2>Runs and failures by runbook and host</h2>{failures}</section>");

    // Activity.
    let rows: Vec<Vec<String>> = r
        .activity
        .iter()
        .map(|a| {
            vec![
                esc(&a.party),
                a.runs_requested.to_string(),
                a.break_glass.to_string(),
                a.approvals_granted.to_string(),
                a.approvals_denied.to_string(),
                a.reviews.to_string(),
                a.freezes.to_string(),
            ]
        })
        .collect();
    let _ = write!(
        o,
        "<section id=\"activity\"><h2>Each party's activity</h2>{}</section>",
        if rows.is_empty() {
            "<p>No activity by a party's users in the period.</p>".into()
        } else {
            table(
                "activity-table",
                "Each party's activity",
                &[
                    "Party",
                    "Runs requested",
                    "Break-glass",
                    "Approvals granted",
                    "Denied",
                    "Reviews",
                    "Freezes",
                ],
                &rows,
                fold,
            )
        }
    );
    o.push_str("</article>");
    o
}

/// The stylesheet of a standalone report file: screen and A4 print.
const STANDALONE_CSS: &str = "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#111;max-width:60rem}\
h1{font-size:1.5rem}h3{font-size:1rem;margin:1rem 0 .4rem}h2{font-size:1.15rem;margin-top:1.5rem;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{border:1px solid #ccc;padding:.25rem .4rem;text-align:left;vertical-align:top}\
th{background:#f0f0f0}code.hash{word-break:break-all;font-size:.8rem}.bad{color:#b00020}\
.charts{display:flex;flex-wrap:wrap;gap:1rem}figure{margin:0}svg.chart{max-width:100%;height:auto}\
@page{size:A4;margin:15mm}\
@media print{body{margin:0;max-width:none;font-size:10pt}h2{break-after:avoid}tr,figure,svg{break-inside:avoid}\
section{break-inside:auto}details{display:none}}";

/// The report as a whole HTML file of its own, with its own stylesheet (screen and A4
/// print); nothing is folded away.
pub fn html_document(r: &Report) -> String {
    let title = format!("tandem report {} to {}", r.period.from, r.period.to);
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>{STANDALONE_CSS}</style></head>\
<body><h1>{t}</h1>{}</body></html>\n",
        html_fragment(r, false),
        t = esc(&title)
    )
}

/// One CSV field, quoted when it needs to be (RFC 4180). Text that a spreadsheet would take
/// for a formula (a break-glass reason is typed by a user) gets a leading `'`.
pub fn csv_field(s: &str) -> String {
    let formula = s.starts_with(['=', '+', '-', '@', '\t', '\r']) && s.parse::<f64>().is_err();
    let s = if formula {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The report as CSV: a header, then one fact a row (`section,item,metric,value`).
pub fn csv(r: &Report) -> String {
    let mut rows: Vec<[String; 4]> = Vec::new();
    let mut add = |section: &str, item: &str, metric: &str, value: String| {
        rows.push([section.into(), item.into(), metric.into(), value]);
    };
    let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    add("report", "", "from", r.period.from.to_string());
    add("report", "", "to", r.period.to.to_string());
    add("report", "", "viewer", r.viewer.clone().unwrap_or_default());
    add("report", "", "party", r.party.clone().unwrap_or_default());
    add("report", "", "generated_at", r.generated_at.clone());
    add("chain", "head", "seq", r.chain.head_seq.to_string());
    add("chain", "head", "hash", r.chain.head_hash.clone());
    add("chain", "", "verified", r.chain.verified.to_string());
    add(
        "chain",
        "",
        "broken",
        r.chain.broken.clone().unwrap_or_default(),
    );
    if let Some(c) = &r.chain.checkpoint {
        add("chain", "checkpoint", "seq", c.seq.to_string());
        add("chain", "checkpoint", "head", c.head.clone());
        add("chain", "checkpoint", "ts", c.ts.clone());
        add("chain", "checkpoint", "key", c.key.clone());
        add(
            "chain",
            "checkpoint",
            "record_seq",
            c.record_seq.to_string(),
        );
    }
    add(
        "totals",
        "",
        "runs_finished",
        r.totals.runs_finished.to_string(),
    );
    for (s, n) in &r.totals.by_status {
        add("totals", s, "runs", n.to_string());
    }
    for p in &r.patch {
        add(
            "patch",
            &p.host,
            "last_patched",
            p.last_patched.clone().unwrap_or_default(),
        );
        add("patch", &p.host, "days_since", opt(p.days_since));
        add(
            "patch",
            &p.host,
            "packages_changed",
            p.packages_changed.to_string(),
        );
        add("patch", &p.host, "runs", p.runs.to_string());
        add("patch", &p.host, "failed", p.failed.to_string());
    }
    let rs = &r.restores;
    add("restores", "", "tests", rs.tests.to_string());
    add("restores", "", "passed", rs.passed.to_string());
    add("restores", "", "failed", rs.failed.to_string());
    add(
        "restores",
        "",
        "pass_rate",
        rs.pass_rate.map(|p| format!("{p:.4}")).unwrap_or_default(),
    );
    for s in &rs.samples {
        let item = format!("{} {} {}", s.ts, s.host, s.run_id);
        add("restore", &item, "passed", s.passed.to_string());
        add(
            "restore",
            &item,
            "duration_ms",
            s.duration_ms.map(|v| v.to_string()).unwrap_or_default(),
        );
        add(
            "restore",
            &item,
            "bytes",
            s.bytes.map(|v| v.to_string()).unwrap_or_default(),
        );
    }
    let inc = &r.incidents;
    add(
        "incidents",
        "",
        "isolations",
        inc.isolations.len().to_string(),
    );
    add(
        "incidents",
        "",
        "break_glass",
        inc.break_glass.len().to_string(),
    );
    add(
        "incidents",
        "",
        "open_reviews",
        inc.open_reviews.to_string(),
    );
    add(
        "incidents",
        "",
        "review_median_secs",
        opt(inc.review_median_secs),
    );
    add("incidents", "", "freezes", inc.freezes.to_string());
    for i in &inc.isolations {
        add("isolation", &i.run_id, "hosts", i.hosts.join(" "));
        add("isolation", &i.run_id, "status", i.status.clone());
    }
    for b in &inc.break_glass {
        add("break_glass", &b.run_id, "runbook", b.runbook.clone());
        add("break_glass", &b.run_id, "by", b.by.clone());
        add("break_glass", &b.run_id, "reason", b.reason.clone());
        add("break_glass", &b.run_id, "review_secs", opt(b.review_secs));
    }
    for a in &r.approvals {
        add("approvals", &a.party, "requested", a.requested.to_string());
        add("approvals", &a.party, "granted", a.granted.to_string());
        add("approvals", &a.party, "denied", a.denied.to_string());
        add("approvals", &a.party, "expired", a.expired.to_string());
        add("approvals", &a.party, "median_secs", opt(a.median_secs));
        add("approvals", &a.party, "p90_secs", opt(a.p90_secs));
    }
    for f in &r.failures_by_runbook {
        add("runbook", &f.runbook, "runs", f.runs.to_string());
        add("runbook", &f.runbook, "succeeded", f.succeeded.to_string());
        add("runbook", &f.runbook, "failed", f.failed.to_string());
        add("runbook", &f.runbook, "other", f.other.to_string());
    }
    for f in &r.failures_by_host {
        add("host", &f.host, "failed", f.failed.to_string());
    }
    for a in &r.activity {
        add(
            "activity",
            &a.party,
            "runs_requested",
            a.runs_requested.to_string(),
        );
        add(
            "activity",
            &a.party,
            "break_glass",
            a.break_glass.to_string(),
        );
        add(
            "activity",
            &a.party,
            "approvals_granted",
            a.approvals_granted.to_string(),
        );
        add(
            "activity",
            &a.party,
            "approvals_denied",
            a.approvals_denied.to_string(),
        );
        add("activity", &a.party, "reviews", a.reviews.to_string());
        add("activity", &a.party, "freezes", a.freezes.to_string());
    }
    let mut out = String::from("section,item,metric,value\n");
    for r in rows {
        let line: Vec<String> = r.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

/// The report as pretty JSON.
pub fn json(r: &Report) -> String {
    // Serializing plain structs of strings and numbers cannot fail.
    serde_json::to_string_pretty(r).unwrap_or_default() + "\n"
}

/// The report in `format`; HTML as a standalone file.
pub fn render(r: &Report, format: Format) -> String {
    match format {
        Format::Html => html_document(r),
        Format::Csv => csv(r),
        Format::Json => json(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\"\nnow"), "\"say \"\"hi\"\"\nnow\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field("-5"), "-5");
    }

    #[test]
    fn durations_and_sizes_read_as_words() {
        assert_eq!(duration(45), "45 s");
        assert_eq!(duration(600), "10 min");
        assert_eq!(duration(3 * 3600), "3.0 h");
        assert_eq!(duration(3 * 86400), "3.0 d");
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(1536.0), "1.5 KiB");
    }
}
