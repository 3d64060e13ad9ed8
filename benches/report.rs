//! The business-review report over a large log (`cargo bench --bench report`): a SQLite store
//! holding 100,000 audit records (10,000 runs of ten records each: requests, approvals,
//! actions, emitted values, ends; patch runs, restore tests, isolations), then
//! the report read, computed and rendered as the CLI and `/reports` do. Prints medians of
//! five rounds; asserts only that the report counted every run.

// A benchmark panics by design when its setup fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use tandem::audit::{Actor, Event};
use tandem::config::Config;
use tandem::report::render::{render, Format};
use tandem::report::{compute, Period};
use tandem::run::reads::{report_source, ReportScope};
use tandem::runbook::Catalog;
use tandem::store::Store;

const RUNS: usize = 10_000;
const ROUNDS: usize = 5;

const CONFIG: &str = "state_dir: state\nparties: [internal, provider]\nusers: []\ninventory:\n\
  - { name: web1, owner: internal, transport: local, tags: [debian] }\n\
  - { name: web2, owner: internal, transport: local, tags: [debian] }\n\
  - { name: nas1, owner: internal, transport: local }\n";

const RUNBOOKS: [(&str, &str); 3] = [
    ("patch", "targets: [\"tag:debian\"]\nreport: patch"),
    ("restore", "targets: [nas1]\nreport: restore_test"),
    ("isolate", "targets: [web1]\nreport: isolation"),
];

/// Appends ten records for each of [`RUNS`] runs (stamped now, by the store).
fn seed(store: &Store) {
    let alice = Actor::user("alice", "internal");
    let paula = Actor::user("paula", "provider");
    let ivan = Actor::user("ivan", "internal");
    let sys = Actor::system();
    for chunk in 0..RUNS / 500 {
        store
            .tx(|tx| {
                for i in chunk * 500..(chunk + 1) * 500 {
                    let id = format!("run{i:05}");
                    let (runbook, by, targets) = match i % 4 {
                        0 | 1 => ("patch", &alice, json!(["web1", "web2"])),
                        2 => ("restore", &alice, json!(["nas1"])),
                        _ => ("isolate", &paula, json!(["web1"])),
                    };
                    let run = Some(id.as_str());
                    tx.audit(
                        by,
                        run,
                        Event::RunRequested,
                        json!({"runbook": runbook, "targets": targets}),
                    )?;
                    tx.audit(
                        by,
                        run,
                        Event::ApprovalRequested,
                        json!({"gate": 0, "from": [{"party": "internal", "quorum": 1}]}),
                    )?;
                    tx.audit(
                        &ivan,
                        run,
                        Event::ApprovalGranted,
                        json!({"gate": 0, "party": "internal"}),
                    )?;
                    tx.audit(&sys, run, Event::RunStarted, json!({}))?;
                    tx.audit(
                        &sys,
                        run,
                        Event::ActionIntent,
                        json!({"host": "web1", "kind": "sh", "target": "apt-get -q update"}),
                    )?;
                    tx.audit(
                        &sys,
                        run,
                        Event::ActionResult,
                        json!({"host": "web1", "outcome": "ok", "exit_code": 0}),
                    )?;
                    tx.audit(
                        &sys,
                        run,
                        Event::Emitted,
                        json!({"host": "web1", "key": "packages_changed", "value": 3}),
                    )?;
                    tx.audit(
                        &sys,
                        run,
                        Event::Emitted,
                        json!({"host": "nas1", "key": "restore_ms", "value": 1200 + i}),
                    )?;
                    tx.audit(
                        &sys,
                        run,
                        Event::Emitted,
                        json!({"host": "nas1", "key": "restore_bytes", "value": 1 << 20}),
                    )?;
                    tx.audit(
                        &sys,
                        run,
                        Event::RunFinished,
                        json!({"status": if i % 7 == 0 { "failed" } else { "succeeded" }}),
                    )?;
                }
                Ok(())
            })
            .expect("seed the log");
    }
}

fn median(mut d: Vec<Duration>) -> Duration {
    d.sort();
    d[d.len() / 2]
}

fn time<T>(what: &str, mut f: impl FnMut() -> T) -> T {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        last = Some(f());
        times.push(t.elapsed());
    }
    println!(
        "{what:<48} median {:>8.1} ms  (min {:.1}, max {:.1})",
        median(times.clone()).as_secs_f64() * 1000.0,
        times.iter().min().unwrap_or(&Duration::ZERO).as_secs_f64() * 1000.0,
        times.iter().max().unwrap_or(&Duration::ZERO).as_secs_f64() * 1000.0,
    );
    last.expect("at least one round")
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    std::fs::write(root.join("tandem.yaml"), CONFIG).expect("write config");
    std::fs::create_dir_all(root.join("runbooks")).expect("runbooks dir");
    for (name, extra) in RUNBOOKS {
        let yaml = format!("name: {name}\nowner: internal\n{extra}\nscript: |\n  log(\"x\");\n");
        std::fs::write(root.join(format!("runbooks/{name}.yaml")), yaml).expect("write runbook");
    }
    let config = Config::load(&root.join("tandem.yaml")).expect("config");
    let catalog = Catalog::load_dir(&root.join("runbooks"), &config).expect("catalog");
    let store = Store::open(&root.join("state")).expect("store");
    let t = Instant::now();
    seed(&store);
    let records = store.audit_len().expect("length");
    println!(
        "seeded {records} audit records in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    size(&root.join("state"));

    let today = chrono::Utc::now().date_naive().to_string();
    let period = Period::parse(&today, &today).expect("period");
    let whole = ReportScope::default();
    let source = time("read the whole log (report_source)", || {
        report_source(&store, &config, &catalog, &whole, period).expect("read")
    });
    let report = time("compute (pure)", || compute(period, &source));
    assert_eq!(report.totals.runs_finished, RUNS as u64);
    for format in [Format::Html, Format::Csv, Format::Json] {
        let text = time(&format!("render {format:?}"), || render(&report, format));
        println!("  {format:?}: {} KiB", text.len() / 1024);
    }
    let party = ReportScope {
        viewer: Some("internal"),
        party: None,
    };
    // The seeded runs have records but no rows in the runs table: a party's scope looks each
    // run up once (10,000 lookups) and finds nothing to show, so this times the lookups, not
    // the decoding of real runs' plans.
    time("read + compute, scoped to a party (rule 10)", || {
        let s = report_source(&store, &config, &catalog, &party, period).expect("read");
        compute(period, &s)
    });
    time("read + compute + HTML, whole log (tandem report)", || {
        let s = report_source(&store, &config, &catalog, &whole, period).expect("read");
        render(&compute(period, &s), Format::Html)
    });
}

fn size(state: &Path) {
    let bytes: u64 = std::fs::read_dir(state)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!("state: {:.1} MiB", bytes as f64 / (1024.0 * 1024.0));
}
