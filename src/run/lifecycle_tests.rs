//! The lifecycle in process, against a real SQLite store in a temp dir and real `local`
//! actions. Cancel racing an approval, and cancel racing a slot's start: 0 runs start after
//! a cancel, and every run's audit trail is consistent. Each round releases both sides from
//! one barrier, so they really race; several rounds run side by side, each on its own
//! runbook. Also: every event of a representative run is an [`crate::audit::Event`], and a
//! scheduler pass that cannot be recorded fires nothing and says so.

use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::Map;

use super::schedule::{slot_key, system_initiator, RETRY_AFTER_FAILURE};
use super::{record_run, App, RunError};
use crate::audit::{Actor, Record};
use crate::config::User;
use crate::state::{HostStatus, RunStatus};

/// Rounds of each race, and how many run side by side.
const ROUNDS: usize = 1000;
const LANES: usize = 4;

struct Site {
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    app: Arc<App>,
}

fn site() -> Site {
    site_with(|config| crate::store::Store::open(&config.state_dir).unwrap())
}

/// A site whose store `open` makes from the config.
fn site_with(open: impl FnOnce(&crate::config::Config) -> crate::store::Store) -> Site {
    let dir = tempfile::tempdir().unwrap();
    let (a, i) = ("a".repeat(64), "b".repeat(64));
    let config = format!(
        "state_dir: state\nparties: [internal, provider]\nusers:\n\
         - {{ name: alice, party: internal, roles: [operator], token_sha256: \"{a}\" }}\n\
         - {{ name: ivan, party: internal, roles: [approver], token_sha256: \"{i}\" }}\n\
         inventory:\n  - {{ name: web1, owner: internal, transport: local }}\n"
    );
    std::fs::write(dir.path().join("tandem.yaml"), config).unwrap();
    std::fs::create_dir_all(dir.path().join("runbooks")).unwrap();
    for lane in 0..LANES {
        let rb = format!(
            "name: race{lane}\ndescription: cancel races the start\nowner: internal\n\
             targets: [web1]\nscope:\n  commands: [\"true\"]\n\
             allowed: {{ parties: [internal], roles: [operator] }}\n\
             approval: {{ from: internal }}\nscript: |\n  sh_ok(\"true\");\n"
        );
        std::fs::write(dir.path().join(format!("runbooks/race{lane}.yaml")), rb).unwrap();
    }
    // A representative run: approval, an action, a refused action, a failure.
    let tour = "name: tour\ndescription: a run that shows most events\nowner: internal\n\
                targets: [web1]\nscope:\n  commands: [\"true\"]\n\
                allowed: { parties: [internal], roles: [operator] }\n\
                approval: { from: internal }\nscript: |\n  sh_ok(\"true\");\n  sh(\"rm -rf /nothing\");\n";
    std::fs::write(dir.path().join("runbooks/tour.yaml"), tour).unwrap();
    // A schedule firing every second, needing nobody's approval.
    let ticker = "name: ticker\ndescription: a schedule\nowner: internal\n\
                  targets: [web1]\nscope:\n  commands: [\"true\"]\n\
                  schedule: { cron: \"* * * * * *\" }\nscript: |\n  sh_ok(\"true\");\n";
    std::fs::write(dir.path().join("runbooks/ticker.yaml"), ticker).unwrap();
    let config = crate::config::Config::load(&dir.path().join("tandem.yaml")).unwrap();
    let catalog = crate::runbook::Catalog::load_dir(&config.runbooks_dir, &config).unwrap();
    let store = open(&config);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let app = {
        let _in = rt.enter();
        App::new(config, catalog, store, "http://127.0.0.1:0").unwrap()
    };
    Site { _dir: dir, rt, app }
}

fn user(app: &App, name: &str) -> User {
    app.config()
        .users
        .iter()
        .find(|u| u.name == name)
        .cloned()
        .unwrap()
}

/// Waits until run `id` is over and no longer carried out.
fn settle(app: &App, id: &str) -> RunStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = app.store.run(id).unwrap().unwrap().status;
        if status.is_final() && !app.is_active(id) {
            return status;
        }
        assert!(Instant::now() < deadline, "run {id} did not end: {status}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// How one round came out.
#[derive(Debug, Default)]
struct Tally {
    cancelled_before_start: usize,
    started: usize,
}

/// Runs `rounds` rounds on lane `lane`: `prepare` makes a run, then `start` (approve, or the
/// slot's start) and a cancel are released together.
fn race_lane(
    site: &Site,
    lane: usize,
    rounds: usize,
    prepare: &(dyn Fn(&Arc<App>, &str) -> String + Sync),
    start: &(dyn Fn(&Arc<App>, &str) + Sync),
) -> Tally {
    let app = &site.app;
    let alice = user(app, "alice");
    let runbook = format!("race{lane}");
    let mut tally = Tally::default();
    for round in 0..rounds {
        let id = prepare(app, &runbook);
        // The cancel leaves the barrier up to 4 ms late, varying by round, so the rounds
        // cover the whole window between the other side's commit and the run's start.
        let skew = Duration::from_micros(((round * 7919) % 4000) as u64);
        let barrier = Barrier::new(2);
        let cancelled = std::thread::scope(|s| {
            let starter = s.spawn(|| {
                let _in = site.rt.enter();
                barrier.wait();
                start(app, &id);
            });
            let canceller = s.spawn(|| {
                barrier.wait();
                let go = Instant::now() + skew;
                while Instant::now() < go {
                    std::hint::spin_loop();
                }
                app.cancel(&alice, &id)
            });
            starter.join().unwrap();
            canceller.join().unwrap()
        });
        let end = settle(app, &id);
        match cancelled {
            // The cancel ended it before it started.
            Ok(row) if row.status == RunStatus::Cancelled => {
                assert_eq!(end, RunStatus::Cancelled, "run {id}")
            }
            // It was running: asked to stop, it may still have reached its end first.
            Ok(_) => assert!(
                matches!(end, RunStatus::Cancelled | RunStatus::Succeeded),
                "run {id}: {end}"
            ),
            // It had ended already: it ran to its end first.
            Err(RunError::Conflict(_)) => assert_eq!(end, RunStatus::Succeeded, "run {id}"),
            Err(e) => panic!("cancel of {id}: {e}"),
        }
        let run = app.store.run(&id).unwrap().unwrap();
        if run.started_at.is_some() {
            tally.started += 1;
        } else {
            tally.cancelled_before_start += 1;
            assert!(
                run.hosts.iter().all(|h| h.status == HostStatus::NotStarted),
                "{run:?}"
            );
        }
    }
    tally
}

/// Every run's trail: one `run_finished`, last of its state changes; nothing started after a
/// cancel ended it; a run cancelled before it started has no `run_started` and no actions.
fn check_trails(app: &App) -> usize {
    let records = app.store.audit_records(0, usize::MAX >> 1).unwrap();
    crate::audit::verify(records.iter().cloned().map(Ok)).unwrap();
    let mut by_run: HashMap<String, Vec<&Record>> = HashMap::new();
    for r in &records {
        if let Some(id) = &r.run_id {
            by_run.entry(id.clone()).or_default().push(r);
        }
    }
    for (id, trail) in &by_run {
        let names: Vec<&str> = trail.iter().map(|r| r.event.as_str()).collect();
        let finished: Vec<usize> = (0..trail.len())
            .filter(|i| names[*i] == "run_finished")
            .collect();
        assert_eq!(finished.len(), 1, "run {id}: {names:?}");
        let end = finished[0];
        let after: Vec<&str> = names[end + 1..].to_vec();
        // A cancel that found the run running may record its request after the run ended.
        assert!(
            after.iter().all(|n| *n == "cancel_requested"),
            "run {id}: {names:?}"
        );
        let status = trail[end].detail["status"].as_str().unwrap_or_default();
        let started = names.contains(&"run_started");
        let acted = names
            .iter()
            .any(|n| *n == "action_intent" || *n == "action_result");
        if status == "cancelled" && !names.contains(&"cancel_requested") {
            assert!(
                !started && !acted,
                "cancelled before it started, yet: {id}: {names:?}"
            );
        }
        if started {
            let start = names.iter().position(|n| *n == "run_started").unwrap_or(0);
            assert!(start < end, "run {id}: {names:?}");
        } else {
            assert!(!acted, "actions without a start: {id}: {names:?}");
        }
        let run = app.store.run(id).unwrap().unwrap();
        assert_eq!(run.status.as_str(), status, "run {id}: {names:?}");
        assert_eq!(run.started_at.is_some(), started, "run {id}: {names:?}");
    }
    by_run.len()
}

fn race(
    prepare: &(dyn Fn(&Arc<App>, &str) -> String + Sync),
    start: &(dyn Fn(&Arc<App>, &str) + Sync),
) {
    let site = site();
    let tallies: Vec<Tally> = std::thread::scope(|s| {
        let lanes: Vec<_> = (0..LANES)
            .map(|lane| {
                let site = &site;
                s.spawn(move || race_lane(site, lane, ROUNDS / LANES, prepare, start))
            })
            .collect();
        lanes.into_iter().map(|l| l.join().unwrap()).collect()
    });
    let before: usize = tallies.iter().map(|t| t.cancelled_before_start).sum();
    let started: usize = tallies.iter().map(|t| t.started).sum();
    eprintln!("{ROUNDS} rounds: {before} cancelled before the start, {started} started");
    assert_eq!(before + started, ROUNDS);
    // Both sides won some rounds: the race was real.
    assert!(before > 0 && started > 0);
    assert_eq!(check_trails(&site.app), ROUNDS);
}

/// A run waiting for approval, requested by alice.
fn awaiting(app: &Arc<App>, runbook: &str) -> String {
    let alice = user(app, "alice");
    let req = super::StartRequest {
        runbook: runbook.to_string(),
        ..Default::default()
    };
    let run = app.submit(&alice, req).unwrap();
    assert_eq!(run.status, RunStatus::AwaitingApproval);
    run.id
}

#[test]
fn cancel_racing_approval_never_starts_a_cancelled_run() {
    race(&awaiting, &|app, id| {
        let ivan = user(app, "ivan");
        // Refused when the cancel came first; either way nothing may start after it.
        match app.decide(&ivan, id, true, None, None) {
            Ok(_) | Err(RunError::Conflict(_)) => {}
            Err(e) => panic!("approving {id}: {e}"),
        }
    });
}

/// A scheduled run approved ahead of its slot, queued for a slot that has just come.
fn queued_for_slot(app: &Arc<App>, runbook: &str) -> String {
    // A fresh slot each round, each a second before the last: all have come.
    static BASE: std::sync::OnceLock<chrono::DateTime<chrono::Utc>> = std::sync::OnceLock::new();
    static BACK: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(1);
    let back = BACK.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let at = *BASE.get_or_init(chrono::Utc::now) - chrono::Duration::seconds(back);
    queued_at(app, runbook, at)
}

/// A scheduled run of `runbook` queued for the slot at `at`.
fn queued_at(app: &Arc<App>, runbook: &str, at: chrono::DateTime<chrono::Utc>) -> String {
    let catalog = app.catalog();
    let rb = catalog.get(runbook).unwrap();
    let key = slot_key(&rb.name, at);
    let plan = app
        .plan(rb, &Map::new(), system_initiator(rb), Some(key))
        .unwrap();
    let id = super::new_run_id();
    app.store
        .tx(|tx| record_run(tx, &id, rb, &plan, &Actor::system(), None, None, None, None))
        .unwrap();
    id
}

/// Several nodes on PostgreSQL: a node's start interrupts a scheduled run left queued for
/// a slot long past (its leader died between queueing and starting it), as a restart does
/// on SQLite. A run queued for a slot that has just come is left to the leader, and so is
/// one waiting for its schedule's run under way on another node (`overlap: queue`).
#[test]
fn on_postgres_a_start_settles_a_scheduled_run_left_queued_for_a_slot_long_past() {
    let pg = crate::store::test_postgres::Postgres::start();
    let url = pg.database();
    let site = site_with(|_| crate::store::Store::connect(&url).unwrap());
    let app = &site.app;
    let _in = site.rt.enter();
    assert!(app.store.cluster().is_some());
    let now = chrono::Utc::now();
    let old = queued_at(app, "ticker", now - chrono::Duration::hours(1));
    let fresh = queued_at(app, "ticker", now - chrono::Duration::seconds(1));
    let under_way = queued_at(app, "race0", now - chrono::Duration::hours(2));
    assert!(crate::store::RunStore::start_run(
        app.store.as_ref(),
        &under_way,
        &Actor::system(),
        serde_json::json!({}),
        ("event", "started"),
    )
    .unwrap());
    let waiting = queued_at(app, "race0", now - chrono::Duration::hours(1));
    assert_eq!(app.recover().unwrap(), 1);
    let status = |id: &str| app.store.run(id).unwrap().unwrap().status;
    assert_eq!(status(&old), RunStatus::Interrupted);
    assert_eq!(status(&fresh), RunStatus::Queued);
    assert_eq!(status(&waiting), RunStatus::Queued);
    assert_eq!(status(&under_way), RunStatus::Running);
    let records = app.store.audit_records(0, 1000).unwrap();
    crate::audit::verify(records.into_iter().map(Ok)).unwrap();
}

#[test]
fn cancel_racing_a_slot_start_never_starts_a_cancelled_run() {
    race(&queued_for_slot, &|app, _id| {
        app.start_queued(chrono::Utc::now()).unwrap();
    });
}

/// Every event name in the audit log of a representative run (the records `audit export`
/// prints) parses into an [`Event`] and back into the same name.
#[test]
fn every_event_of_a_representative_run_round_trips() {
    use crate::audit::Event;
    let site = site();
    let app = &site.app;
    app.store
        .audit(
            &Actor::system(),
            None,
            Event::ConfigLoaded,
            serde_json::json!({}),
        )
        .unwrap();
    let id = awaiting(app, "tour");
    {
        let _in = site.rt.enter();
        app.decide(&user(app, "ivan"), &id, true, Some("ok"), None)
            .unwrap();
    }
    assert_eq!(settle(app, &id), RunStatus::Failed);
    let records = app.store.audit_records(0, 1000).unwrap();
    let mut seen = Vec::new();
    for r in &records {
        let e: Event = r.event.parse().unwrap();
        assert_eq!(e.as_str(), r.event);
        seen.push(e);
    }
    for want in [
        Event::ConfigLoaded,
        Event::RunRequested,
        Event::ApprovalRequested,
        Event::ApprovalGranted,
        Event::ApprovalComplete,
        Event::RunStarted,
        Event::ActionIntent,
        Event::ActionResult,
        Event::ScopeDenied,
        Event::RunFinished,
    ] {
        assert!(seen.contains(&want), "{want} missing from {seen:?}");
    }
}

/// A scheduler pass whose writes fail is not swallowed: it is audited as `slot_failed`, its
/// slots are not fired (the last handled slot stays), it is tried again soon, and once the
/// store takes writes again the same slots fire.
#[test]
fn a_scheduler_pass_that_cannot_be_recorded_fires_nothing_and_is_audited() {
    use crate::audit::Event;
    let site = site();
    let app = &site.app;
    let _in = site.rt.enter();
    let names = vec!["ticker".to_string()];
    let t0 = chrono::Utc::now();
    // The first pass only notes where the schedule starts.
    let first = app.schedule_pass(&names, t0);
    assert_eq!(first.len(), 1);
    let last = |app: &App| app.store.tx(|tx| tx.schedule_last("ticker")).unwrap();
    let start = last(app);
    assert!(start.is_some());

    // The store refuses every new scheduled run.
    let db = rusqlite::Connection::open(app.config().state_dir.join("tandem.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db.execute_batch(
        "CREATE TRIGGER refuse_slots BEFORE INSERT ON runs WHEN NEW.slot IS NOT NULL
         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
    )
    .unwrap();
    let t1 = t0 + chrono::Duration::seconds(3);
    let next = app.schedule_pass(&names, t1);
    assert_eq!(
        next,
        vec![("ticker".to_string(), Some(t1 + RETRY_AFTER_FAILURE))]
    );
    assert_eq!(last(app), start, "the failed pass advanced the schedule");
    assert!(app.store.runs(None, 10).unwrap().is_empty());
    let failed: Vec<Record> = app
        .store
        .audit_records(0, 1000)
        .unwrap()
        .into_iter()
        .filter(|r| r.event == Event::SlotFailed.as_str())
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].detail["runbook"], "ticker");

    // Writes work again: the same slots fire, once each.
    db.execute_batch("DROP TRIGGER refuse_slots;").unwrap();
    app.schedule_pass(&names, t1);
    assert_ne!(last(app), start);
    let runs = app.store.runs(None, 10).unwrap();
    assert!(!runs.is_empty());
    for r in &runs {
        settle(app, &r.id);
    }
}

/// A draining daemon starts nothing: an approval is recorded but leaves the run queued, a
/// scheduler pass fires no slot; the next daemon (here: the drain lifted, as at a start)
/// takes the run up with `start_held`.
#[test]
fn a_draining_daemon_starts_nothing_and_the_next_start_takes_the_run_up() {
    let site = site();
    let app = &site.app;
    let _in = site.rt.enter();
    let names = vec!["ticker".to_string()];
    let t0 = chrono::Utc::now();
    app.schedule_pass(&names, t0);
    let id = awaiting(app, "tour");

    app.shutting_down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let run = app
        .decide(&user(app, "ivan"), &id, true, None, None)
        .unwrap();
    assert_eq!(run.status, RunStatus::Queued);
    assert!(!app.is_active(&id));
    let t1 = t0 + chrono::Duration::seconds(3);
    assert!(app.schedule_pass(&names, t1).is_empty());
    let runs = app.store.runs(None, 10).unwrap();
    assert_eq!(runs.len(), 1, "a slot fired while draining: {runs:?}");
    assert_eq!(
        app.store.run(&id).unwrap().unwrap().status,
        RunStatus::Queued
    );

    app.shutting_down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(app.start_held().unwrap(), 1);
    // `tour` ends failed by design (its script steps out of scope), after starting.
    assert_eq!(settle(app, &id), RunStatus::Failed);
    assert!(app.store.run(&id).unwrap().unwrap().started_at.is_some());
}
