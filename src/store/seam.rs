//! The store seam: what the orchestrator asks of a store, in the domain's terms (create a
//! run with its plan, move it, end it, record an action's intent and result, append to the
//! audit log, list what a party may see), not in terms of tables. Each operation is one
//! transaction that either lands whole, with its audit record, or not at all.
//!
//! [`Store`] implements it, on SQLite or on PostgreSQL; [`contract`] is the test suite every
//! backend must pass, run here against both (PostgreSQL: a throwaway server started by the
//! test). The orchestrator still reaches the store's transactions directly for what the seam
//! does not cover yet (gates and decisions, schedules, freezes, logs).

use serde_json::Value;

use super::{AuditEntry, NewRun, RunFilter, RunRow, Store, StoreError, Transitioned, Tx};
use crate::audit::{Actor, Event, Record};
use crate::state::{ActionStatus, GateStatus, HostStatus, RunStatus};

/// How a run ends: decided by `run::lifecycle`, written by the store in one transaction.
#[derive(Debug, Clone)]
pub struct Ending<'a> {
    pub to: RunStatus,
    pub error: Option<&'a str>,
    pub actor: &'a Actor,
    /// What its hosts not yet done become.
    pub leftover_hosts: HostStatus,
    /// What its gates still pending become.
    pub leftover_gates: GateStatus,
    /// The stream and line its log ends with.
    pub line: (&'a str, &'a str),
}

/// An action about to run (rule 8: recorded, with its audit record, before it runs).
#[derive(Debug, Clone)]
pub struct Intent<'a> {
    pub run_id: &'a str,
    pub host: Option<&'a str>,
    pub kind: &'a str,
    pub target: &'a str,
    pub actor: &'a Actor,
    /// The `action_intent` record's detail.
    pub detail: Value,
}

/// The result of an action that ran.
#[derive(Debug, Clone)]
pub struct Outcome<'a> {
    pub action_id: i64,
    pub run_id: &'a str,
    pub host: Option<&'a str>,
    pub actor: &'a Actor,
    /// The `action_result` record's detail.
    pub detail: Value,
    /// The action's last chunks of output, stored with the result: (stream, bytes).
    pub tail: &'a [(&'static str, Vec<u8>)],
    /// A line for the run's log (an error), if any: (stream, text).
    pub line: Option<(&'a str, &'a str)>,
}

/// The store as the orchestrator sees it. Every method is one durable transaction.
pub trait RunStore: Send + Sync {
    /// Appends one record to the audit chain.
    fn append_audit(
        &self,
        actor: &Actor,
        run_id: Option<&str>,
        event: Event,
        detail: Value,
    ) -> Result<Record, StoreError>;

    /// Creates a run with its plan and hosts (each `pending`), with its `run_requested`
    /// record.
    fn create_run(&self, run: &NewRun<'_>, requested: AuditEntry<'_>) -> Result<(), StoreError>;

    /// Moves a run from one of `from` to `to` with its audit record; refused, writing
    /// nothing, when it is no longer in `from`.
    fn transition(
        &self,
        id: &str,
        from: &[RunStatus],
        to: RunStatus,
        error: Option<&str>,
        audit: AuditEntry<'_>,
    ) -> Result<Transitioned, StoreError>;

    /// Ends a run that is in one of `from`: status, leftover hosts and gates, the last log
    /// line and `run_finished`. `false` (nothing written) when it was no longer in `from`.
    fn end_run(
        &self,
        id: &str,
        from: &[RunStatus],
        ending: &Ending<'_>,
    ) -> Result<bool, StoreError>;

    /// Claims a queued run for execution: `queued → running` with `run_started` and its
    /// first log line. `false` (nothing written) when it is no longer queued (cancelled, or
    /// claimed by another executor): the caller must not run it.
    fn start_run(
        &self,
        id: &str,
        actor: &Actor,
        detail: Value,
        line: (&str, &str),
    ) -> Result<bool, StoreError>;

    /// Records an action's intent; returns the action's id.
    fn record_intent(&self, intent: &Intent<'_>) -> Result<i64, StoreError>;

    /// Records an action's result.
    fn record_result(&self, outcome: &Outcome<'_>) -> Result<(), StoreError>;

    /// One run with its hosts, gates and review.
    fn run(&self, id: &str) -> Result<Option<RunRow>, StoreError>;

    /// Up to `limit` runs that `may_see` admits, newest first, narrowed by `filter` (a
    /// status, older than a run, a reference).
    fn runs_visible(
        &self,
        filter: &RunFilter<'_>,
        limit: usize,
        may_see: &dyn Fn(&RunRow) -> bool,
    ) -> Result<Vec<RunRow>, StoreError>;

    /// Runs accepted and not started that wait for no slot: the work a daemon takes up.
    fn startable_runs(&self) -> Result<Vec<(String, String)>, StoreError>;

    /// Audit records after `after`, at most `limit`, in chain order.
    fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<Record>, StoreError>;
}

impl Tx<'_> {
    /// [`RunStore::create_run`] inside this transaction.
    pub fn create_run(
        &self,
        run: &NewRun<'_>,
        requested: &AuditEntry<'_>,
    ) -> Result<(), StoreError> {
        self.insert_run(run)?;
        self.audit(
            requested.actor,
            Some(run.id),
            requested.event,
            requested.detail.clone(),
        )?;
        Ok(())
    }

    /// [`RunStore::start_run`] inside this transaction.
    pub fn start_run(
        &self,
        id: &str,
        actor: &Actor,
        detail: Value,
        line: (&str, &str),
    ) -> Result<bool, StoreError> {
        let moved = self.transition(
            id,
            &[RunStatus::Queued],
            RunStatus::Running,
            None,
            AuditEntry {
                actor,
                event: Event::RunStarted,
                detail,
            },
        )?;
        if !moved.moved() {
            return Ok(false);
        }
        self.claim(id)?;
        self.log(id, None, line.0, line.1)?;
        Ok(true)
    }

    /// [`RunStore::end_run`] inside this transaction.
    pub fn end_run(
        &self,
        id: &str,
        from: &[RunStatus],
        e: &Ending<'_>,
    ) -> Result<bool, StoreError> {
        let moved = self.transition(
            id,
            from,
            e.to,
            e.error,
            AuditEntry {
                actor: e.actor,
                event: Event::RunFinished,
                detail: serde_json::json!({"status": e.to, "error": e.error}),
            },
        )?;
        if !moved.moved() {
            return Ok(false);
        }
        self.close_hosts(id, e.leftover_hosts)?;
        self.close_pending_gates(id, e.leftover_gates)?;
        self.log(id, None, e.line.0, e.line.1)?;
        self.release(id);
        Ok(true)
    }

    /// [`RunStore::record_intent`] inside this transaction.
    pub fn record_intent(&self, i: &Intent<'_>) -> Result<i64, StoreError> {
        let id = self.action_intent(i.run_id, i.host, i.kind, i.target)?;
        self.audit(
            i.actor,
            Some(i.run_id),
            Event::ActionIntent,
            i.detail.clone(),
        )?;
        Ok(id)
    }

    /// [`RunStore::record_result`] inside this transaction.
    pub fn record_result(&self, o: &Outcome<'_>) -> Result<(), StoreError> {
        self.fence(o.run_id)?;
        for (stream, bytes) in o.tail {
            self.log_chunk(o.run_id, o.host, stream, bytes)?;
        }
        self.action_done(o.action_id, ActionStatus::Done)?;
        self.audit(
            o.actor,
            Some(o.run_id),
            Event::ActionResult,
            o.detail.clone(),
        )?;
        if let Some((stream, text)) = o.line {
            self.log(o.run_id, o.host, stream, text)?;
        }
        Ok(())
    }
}

impl RunStore for Store {
    fn append_audit(
        &self,
        actor: &Actor,
        run_id: Option<&str>,
        event: Event,
        detail: Value,
    ) -> Result<Record, StoreError> {
        self.audit(actor, run_id, event, detail)
    }

    fn create_run(&self, run: &NewRun<'_>, requested: AuditEntry<'_>) -> Result<(), StoreError> {
        self.tx(|tx| tx.create_run(run, &requested))
    }

    fn transition(
        &self,
        id: &str,
        from: &[RunStatus],
        to: RunStatus,
        error: Option<&str>,
        audit: AuditEntry<'_>,
    ) -> Result<Transitioned, StoreError> {
        self.tx(|tx| tx.transition(id, from, to, error, audit.clone()))
    }

    fn end_run(
        &self,
        id: &str,
        from: &[RunStatus],
        ending: &Ending<'_>,
    ) -> Result<bool, StoreError> {
        self.tx(|tx| tx.end_run(id, from, ending))
    }

    fn start_run(
        &self,
        id: &str,
        actor: &Actor,
        detail: Value,
        line: (&str, &str),
    ) -> Result<bool, StoreError> {
        self.tx(|tx| tx.start_run(id, actor, detail.clone(), line))
    }

    fn record_intent(&self, intent: &Intent<'_>) -> Result<i64, StoreError> {
        self.tx(|tx| tx.record_intent(intent))
    }

    fn record_result(&self, outcome: &Outcome<'_>) -> Result<(), StoreError> {
        self.tx(|tx| tx.record_result(outcome))
    }

    fn run(&self, id: &str) -> Result<Option<RunRow>, StoreError> {
        Store::run(self, id)
    }

    fn runs_visible(
        &self,
        filter: &RunFilter<'_>,
        limit: usize,
        may_see: &dyn Fn(&RunRow) -> bool,
    ) -> Result<Vec<RunRow>, StoreError> {
        self.runs_where(filter, limit, may_see)
    }

    fn startable_runs(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut out = Vec::new();
        for (id, _, slot) in self.runs_in(&[RunStatus::Queued])? {
            if slot.is_none() {
                if let Some(run) = Store::run(self, &id)? {
                    out.push((id, run.runbook));
                }
            }
        }
        Ok(out)
    }

    fn audit_after(&self, after: u64, limit: usize) -> Result<Vec<Record>, StoreError> {
        self.audit_records(after, limit)
    }
}

/// The contract every [`RunStore`] keeps. Each check takes a fresh, empty store.
#[cfg(test)]
pub(crate) mod contract {
    use super::*;
    use crate::runbook::plan::{Initiator, Plan, PlannedHost};

    fn actor() -> Actor {
        Actor::user("alice", "internal")
    }

    fn plan() -> Plan {
        Plan {
            runbook: "rb".into(),
            version: "1".into(),
            params: [("n".to_string(), serde_json::json!(3))]
                .into_iter()
                .collect(),
            targets: vec![PlannedHost {
                name: "web1".into(),
                owner: "internal".into(),
                ..Default::default()
            }],
            initiator: Initiator {
                user: "alice".into(),
                party: "internal".into(),
            },
            slot: None,
            owners: vec!["internal".into()],
            digest: "d".into(),
            ..Default::default()
        }
    }

    fn create(store: &impl RunStore, id: &str, status: RunStatus, plan: &Plan) {
        let hosts: Vec<String> = plan.targets.iter().map(|t| t.name.clone()).collect();
        store
            .create_run(
                &NewRun {
                    id,
                    runbook: &plan.runbook,
                    version: &plan.version,
                    status,
                    initiator_user: &plan.initiator.user,
                    initiator_party: &plan.initiator.party,
                    digest: &plan.digest,
                    plan,
                    break_glass: false,
                    reason: None,
                    slot: plan.slot.as_deref(),
                    hosts: &hosts,
                    parent_run: None,
                    reference: None,
                },
                AuditEntry {
                    actor: &actor(),
                    event: Event::RunRequested,
                    detail: serde_json::json!({}),
                },
            )
            .unwrap();
    }

    fn events(store: &impl RunStore, id: &str) -> Vec<String> {
        store
            .audit_after(0, 10_000)
            .unwrap()
            .into_iter()
            .filter(|r| r.run_id.as_deref() == Some(id))
            .map(|r| r.event)
            .collect()
    }

    /// A run's plan comes back as it went in, typed.
    pub fn a_plan_round_trips(store: &impl RunStore) {
        let p = plan();
        create(store, "r1", RunStatus::AwaitingApproval, &p);
        let run = store.run("r1").unwrap().unwrap();
        assert_eq!(run.plan, p);
        assert_eq!(run.status, RunStatus::AwaitingApproval);
        assert_eq!(run.initiator, p.initiator);
        assert_eq!(run.hosts[0].status, HostStatus::Pending);
        assert_eq!(events(store, "r1"), ["run_requested"]);
    }

    /// A move from the wrong status is refused and writes nothing; the right one writes the
    /// status and its record together.
    pub fn a_transition_is_a_compare_and_set_with_its_record(store: &impl RunStore) {
        create(store, "r1", RunStatus::AwaitingApproval, &plan());
        let system = Actor::system();
        let entry = |event| AuditEntry {
            actor: &system,
            event,
            detail: serde_json::json!({}),
        };
        let refused = store
            .transition(
                "r1",
                &[RunStatus::Queued],
                RunStatus::Running,
                None,
                entry(Event::RunStarted),
            )
            .unwrap();
        assert_eq!(
            refused,
            Transitioned::Refused(Some(RunStatus::AwaitingApproval))
        );
        assert_eq!(events(store, "r1"), ["run_requested"]);
        let moved = store
            .transition(
                "r1",
                &[RunStatus::AwaitingApproval],
                RunStatus::Queued,
                None,
                entry(Event::ApprovalComplete),
            )
            .unwrap();
        assert!(moved.moved());
        assert_eq!(store.run("r1").unwrap().unwrap().status, RunStatus::Queued);
        assert_eq!(events(store, "r1"), ["run_requested", "approval_complete"]);
        let missing = store
            .transition(
                "nope",
                &[RunStatus::Queued],
                RunStatus::Running,
                None,
                entry(Event::RunStarted),
            )
            .unwrap();
        assert_eq!(missing, Transitioned::Refused(None));
    }

    /// Ending a run closes what is left, once; a second ending is refused.
    pub fn a_run_ends_once(store: &impl RunStore) {
        create(store, "r1", RunStatus::Queued, &plan());
        let a = actor();
        let ending = Ending {
            to: RunStatus::Cancelled,
            error: Some("cancelled before it started"),
            actor: &a,
            leftover_hosts: HostStatus::NotStarted,
            leftover_gates: GateStatus::Cancelled,
            line: ("event", "run cancelled"),
        };
        assert!(store
            .end_run("r1", RunStatus::NOT_STARTED, &ending)
            .unwrap());
        let again = Ending {
            to: RunStatus::Failed,
            ..ending.clone()
        };
        assert!(!store.end_run("r1", RunStatus::NOT_STARTED, &again).unwrap());
        let run = store.run("r1").unwrap().unwrap();
        assert_eq!(run.status, RunStatus::Cancelled);
        assert!(run.finished_at.is_some() && run.started_at.is_none());
        assert_eq!(run.hosts[0].status, HostStatus::NotStarted);
        assert_eq!(events(store, "r1"), ["run_requested", "run_finished"]);
    }

    /// An intent and its result land with their records, in order.
    pub fn intents_and_results_are_recorded_with_their_records(store: &impl RunStore) {
        create(store, "r1", RunStatus::Running, &plan());
        let a = actor();
        let id = store
            .record_intent(&Intent {
                run_id: "r1",
                host: Some("web1"),
                kind: "sh",
                target: "true",
                actor: &a,
                detail: serde_json::json!({"command": "true"}),
            })
            .unwrap();
        store
            .record_result(&Outcome {
                action_id: id,
                run_id: "r1",
                host: Some("web1"),
                actor: &a,
                detail: serde_json::json!({"code": 0}),
                tail: &[("stdout", b"hi\n".to_vec())],
                line: None,
            })
            .unwrap();
        assert_eq!(
            events(store, "r1"),
            ["run_requested", "action_intent", "action_result"]
        );
    }

    /// Listing keeps only what `may_see` admits, newest first; startable runs are the
    /// queued ones that wait for no slot.
    pub fn listing_and_startable_work(store: &impl RunStore) {
        let mut p = plan();
        create(store, "a", RunStatus::Queued, &p);
        p.initiator.party = "provider".into();
        create(store, "b", RunStatus::AwaitingApproval, &p);
        p.slot = Some("rb@2030-01-01T00:00:00Z".into());
        create(store, "c", RunStatus::Queued, &p);
        let provider = |r: &RunRow| r.initiator.party == "provider";
        let seen: Vec<String> = store
            .runs_visible(&RunFilter::default(), 10, &provider)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(seen, ["c", "b"]);
        let queued: Vec<String> = store
            .runs_visible(
                &RunFilter {
                    status: Some(RunStatus::Queued),
                    ..RunFilter::default()
                },
                10,
                &|_| true,
            )
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(queued, ["c", "a"]);
        assert_eq!(
            store.startable_runs().unwrap(),
            [("a".to_string(), "rb".to_string())]
        );
    }

    /// A listing that keeps few of many runs reads them a page at a time: what it returns
    /// is the same, newest first, across page boundaries and with a cursor.
    pub fn listing_pages_through_many_runs(store: &impl RunStore) {
        let p = plan();
        let ids: Vec<String> = (0..70).map(|i| format!("r{i:02}")).collect();
        for id in &ids {
            create(store, id, RunStatus::Queued, &p);
        }
        let newest_first = |a: &RunRow, b: &RunRow| {
            (b.created_at.as_str(), b.id.as_str()).cmp(&(a.created_at.as_str(), a.id.as_str()))
        };
        let mut all = store
            .runs_visible(&RunFilter::default(), 1000, &|_| true)
            .unwrap();
        assert_eq!(all.len(), 70);
        let listed: Vec<String> = all.iter().map(|r| r.id.clone()).collect();
        all.sort_by(newest_first);
        let sorted: Vec<String> = all.iter().map(|r| r.id.clone()).collect();
        assert_eq!(listed, sorted, "not newest first");
        // Every 9th run (by name) is kept: the 16-run pages are each mostly refused.
        let kept = |r: &RunRow| kept_id(&r.id);
        let want: Vec<String> = sorted.iter().filter(|id| kept_id(id)).cloned().collect();
        let got: Vec<String> = store
            .runs_visible(&RunFilter::default(), 5, &kept)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(got, want[..5]);
        // The next page, from the last one shown: the rest.
        let rest: Vec<String> = store
            .runs_visible(
                &RunFilter {
                    before: Some(&got[4]),
                    ..RunFilter::default()
                },
                5,
                &kept,
            )
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(rest, want[5..]);
    }

    fn kept_id(id: &str) -> bool {
        id[1..].parse::<u32>().is_ok_and(|n| n % 9 == 0)
    }

    /// Concurrent appends keep one linear, verifiable chain.
    pub fn the_audit_chain_stays_linear(store: &impl RunStore) {
        std::thread::scope(|s| {
            for t in 0..4 {
                s.spawn(move || {
                    for i in 0..25 {
                        store
                            .append_audit(
                                &Actor::system(),
                                None,
                                Event::ConfigLoaded,
                                serde_json::json!({"t": t, "i": i}),
                            )
                            .unwrap();
                    }
                });
            }
        });
        let all = store.audit_after(0, 1000).unwrap();
        assert_eq!(all.len(), 100);
        crate::audit::verify(all.into_iter().map(Ok)).unwrap();
    }

    /// A run is claimed (started) once; a cancelled one never.
    pub fn a_run_is_claimed_once_and_never_after_a_cancel(store: &impl RunStore) {
        create(store, "r1", RunStatus::Queued, &plan());
        create(store, "r2", RunStatus::Queued, &plan());
        let a = actor();
        let start = |id| {
            store
                .start_run(id, &a, serde_json::json!({}), ("event", "run started"))
                .unwrap()
        };
        assert!(start("r1"));
        assert!(!start("r1"));
        let ending = Ending {
            to: RunStatus::Cancelled,
            error: None,
            actor: &a,
            leftover_hosts: HostStatus::NotStarted,
            leftover_gates: GateStatus::Cancelled,
            line: ("event", "run cancelled"),
        };
        assert!(store
            .end_run("r2", RunStatus::NOT_STARTED, &ending)
            .unwrap());
        assert!(!start("r2"));
        assert_eq!(events(store, "r1"), ["run_requested", "run_started"]);
        assert_eq!(events(store, "r2"), ["run_requested", "run_finished"]);
        assert!(store.run("r2").unwrap().unwrap().started_at.is_none());
    }

    /// Racing moves of one run from the same status: exactly one wins, and only its record
    /// is written.
    pub fn racing_moves_have_one_winner(store: &impl RunStore) {
        create(store, "r1", RunStatus::Queued, &plan());
        let system = Actor::system();
        let barrier = std::sync::Barrier::new(8);
        let won: usize = std::thread::scope(|s| {
            let racers: Vec<_> = (0..8)
                .map(|i| {
                    let (system, barrier) = (&system, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        let to = if i % 2 == 0 {
                            RunStatus::Running
                        } else {
                            RunStatus::Cancelled
                        };
                        let moved = store
                            .transition(
                                "r1",
                                &[RunStatus::Queued],
                                to,
                                None,
                                AuditEntry {
                                    actor: system,
                                    event: Event::RunStarted,
                                    detail: serde_json::json!({"racer": i}),
                                },
                            )
                            .unwrap();
                        usize::from(moved.moved())
                    })
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).sum()
        });
        assert_eq!(won, 1);
        assert_eq!(events(store, "r1"), ["run_requested", "run_started"]);
    }

    /// Runs every check, each on a fresh store from `fresh`.
    pub fn run_all<S: RunStore>(fresh: impl Fn() -> S) {
        a_plan_round_trips(&fresh());
        a_transition_is_a_compare_and_set_with_its_record(&fresh());
        racing_moves_have_one_winner(&fresh());
        a_run_is_claimed_once_and_never_after_a_cancel(&fresh());
        a_run_ends_once(&fresh());
        intents_and_results_are_recorded_with_their_records(&fresh());
        listing_and_startable_work(&fresh());
        listing_pages_through_many_runs(&fresh());
        the_audit_chain_stays_linear(&fresh());
    }

    #[test]
    fn sqlite_keeps_the_contract() {
        let dirs = std::sync::Mutex::new(Vec::new());
        run_all(|| {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            dirs.lock().unwrap().push(dir);
            store
        });
    }

    /// Two nodes on one PostgreSQL: the node that claimed a run and then stopped renewing
    /// its lease is taken over by the other, and from then on every write of the run's
    /// results by the old node is refused (its fencing token is stale).
    #[test]
    fn a_node_that_lost_its_lease_cannot_write_the_runs_results() {
        let pg = crate::store::test_postgres::Postgres::start();
        let url = pg.database();
        let lease = std::time::Duration::from_secs(1);
        let a = Store::connect_with_lease(&url, lease).unwrap();
        let b = Store::connect_with_lease(&url, lease).unwrap();
        create(&a, "r1", RunStatus::Queued, &plan());
        let alice = actor();
        assert!(a
            .start_run("r1", &alice, serde_json::json!({}), ("event", "started"))
            .unwrap());
        assert!(!b
            .start_run("r1", &alice, serde_json::json!({}), ("event", "started"))
            .unwrap());
        let intent = Intent {
            run_id: "r1",
            host: Some("web1"),
            kind: "sh",
            target: "true",
            actor: &alice,
            detail: serde_json::json!({}),
        };
        let action = a.record_intent(&intent).unwrap();
        // While `a` renews, nothing has expired.
        assert_eq!(a.renew_leases().unwrap(), 1);
        assert!(b.expired_leases().unwrap().is_empty());
        // `a` stops renewing: its lease runs out and `b` takes the run over.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while b.expired_leases().unwrap().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the lease never expired"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let system = Actor::system();
        let taken = b
            .tx(|tx| {
                assert!(tx.take_over("r1")?);
                assert!(!tx.take_over("r1")?, "taken over twice");
                tx.end_run(
                    "r1",
                    &[RunStatus::Running],
                    &Ending {
                        to: RunStatus::Interrupted,
                        error: None,
                        actor: &system,
                        leftover_hosts: HostStatus::NotStarted,
                        leftover_gates: GateStatus::Cancelled,
                        line: ("event", "interrupted"),
                    },
                )
            })
            .unwrap();
        assert!(taken);
        let refused = a.record_result(&Outcome {
            action_id: action,
            run_id: "r1",
            host: Some("web1"),
            actor: &alice,
            detail: serde_json::json!({}),
            tail: &[],
            line: None,
        });
        assert!(
            matches!(refused, Err(StoreError::Fenced(ref id)) if id == "r1"),
            "{refused:?}"
        );
        assert!(matches!(
            a.record_intent(&intent),
            Err(StoreError::Fenced(_))
        ));
        assert_eq!(a.renew_leases().unwrap(), 0, "a lost lease is not renewed");
        assert_eq!(
            events(&b, "r1"),
            [
                "run_requested",
                "run_started",
                "action_intent",
                "run_finished"
            ]
        );
        crate::audit::verify(b.audit_after(0, 100).unwrap().into_iter().map(Ok)).unwrap();
    }

    #[test]
    fn postgres_keeps_the_contract() {
        let pg = crate::store::test_postgres::Postgres::start();
        run_all(|| {
            let store = Store::connect(&pg.database()).unwrap();
            assert_eq!(store.dialect(), crate::store::Dialect::Postgres);
            store
        });
    }
}
