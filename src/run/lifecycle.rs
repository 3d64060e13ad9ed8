//! The one owner of a run's lifecycle. Every change of a run's status goes through here,
//! as a compare-and-set in the store ([`Tx::transition`]) with its audit record in the same
//! transaction:
//!
//! ```text
//!   awaiting_approval ──approved──▶ queued ──start──▶ running ──▶ succeeded | failed
//!         │                           │                  │        cancelled | denied | expired
//!         └──▶ denied | expired       │                  └──────▶ interrupted (a stop)
//!         └──────────┬────────────────┘
//!                    └──▶ cancelled | interrupted | failed (before it started)
//! ```
//!
//! A move is refused when the run is no longer where the caller thought (a cancel that
//! committed first, an approval racing an expiry); the caller then does nothing. Starting is
//! itself a move (`queued → running`) that the executor takes before its first action, so a
//! run cancelled, denied or expired before that never starts.

use serde_json::Value;

use super::output;
use crate::audit::{Actor, Event};
use crate::state::{GateStatus, HostStatus, RunStatus};
use crate::store::{AuditEntry, Ending, StoreError, Tx};

/// Whether the lifecycle allows a run to move from `from` to `to`.
pub fn allowed(from: RunStatus, to: RunStatus) -> bool {
    use RunStatus::*;
    match (from, to) {
        (AwaitingApproval, Queued) => true,
        (Queued, Running) => true,
        // Ending before anything ran: decided, cancelled, stopped, or refused at start (rule 4).
        (AwaitingApproval, Denied | Expired | Cancelled | Interrupted) => true,
        (Queued, Cancelled | Interrupted | Failed) => true,
        (Running, to) => to.is_final(),
        _ => false,
    }
}

/// What a run ends as when one of its gates closed without approval (`None`: the gate
/// vanished): `denied` when it was denied, or expired under `on_expiry: deny`; else `expired`.
pub fn after_gate(expiry_denies: bool, gate: Option<GateStatus>) -> RunStatus {
    match gate {
        Some(GateStatus::Denied) => RunStatus::Denied,
        Some(GateStatus::Expired) if expiry_denies => RunStatus::Denied,
        _ => RunStatus::Expired,
    }
}

/// What the hosts a run never got to are marked when it ends as `to`.
pub fn leftover_hosts(to: RunStatus) -> HostStatus {
    match to {
        RunStatus::Interrupted => HostStatus::Interrupted,
        _ => HostStatus::NotStarted,
    }
}

/// What a gate still pending when a run ends as `to` is closed as: it can no longer be
/// decided.
pub fn leftover_gates(to: RunStatus) -> GateStatus {
    match to {
        RunStatus::Interrupted => GateStatus::Interrupted,
        RunStatus::Cancelled => GateStatus::Cancelled,
        RunStatus::Expired => GateStatus::Expired,
        RunStatus::Denied => GateStatus::Denied,
        _ => GateStatus::Closed,
    }
}

/// Ends a run that is in one of `from` as `to` (a final status): its status and error, its
/// hosts not yet done, its pending gates, a line in its log and `run_finished`, all in `tx`.
/// `false` (nothing written) when the run was no longer in `from`.
pub(super) fn end(
    tx: &Tx<'_>,
    id: &str,
    from: &[RunStatus],
    to: RunStatus,
    error: Option<&str>,
    actor: &Actor,
) -> Result<bool, StoreError> {
    tx.end_run(
        id,
        from,
        &ending(from, to, error, actor, &end_line(to, error)),
    )
}

/// The line a run's log ends with.
fn end_line(to: RunStatus, error: Option<&str>) -> String {
    format!(
        "run {to}{}",
        error.map(|e| format!(": {e}")).unwrap_or_default()
    )
}

/// How a run in one of `from` ends as `to`, in the lifecycle's terms.
fn ending<'a>(
    from: &[RunStatus],
    to: RunStatus,
    error: Option<&'a str>,
    actor: &'a Actor,
    line: &'a str,
) -> Ending<'a> {
    debug_assert!(from.iter().all(|f| allowed(*f, to)), "{from:?} → {to}");
    Ending {
        to,
        error,
        actor,
        leftover_hosts: leftover_hosts(to),
        leftover_gates: leftover_gates(to),
        line: (output::EVENT_STREAM, line),
    }
}

/// Accepts a run waiting for approval (its start gate approved, or a standing approval
/// covering its slot): `awaiting_approval → queued`, recorded as `event`. `false` when it
/// was no longer waiting.
pub(super) fn accept(
    tx: &Tx<'_>,
    id: &str,
    actor: &Actor,
    event: Event,
    detail: Value,
) -> Result<bool, StoreError> {
    let moved = tx.transition(
        id,
        &[RunStatus::AwaitingApproval],
        RunStatus::Queued,
        None,
        AuditEntry {
            actor,
            event,
            detail,
        },
    )?;
    Ok(moved.moved())
}

/// Starts a queued run: `queued → running` with `run_started` and a line in its log. The
/// executor takes this before its first action; `false` means the run was cancelled (or
/// otherwise ended) first, and must not start.
pub(super) fn start(
    tx: &Tx<'_>,
    id: &str,
    actor: &Actor,
    detail: Value,
    line: &str,
) -> Result<bool, StoreError> {
    let started = tx.start_run(id, actor, detail, (output::EVENT_STREAM, line))?;
    if !started {
        tracing::info!(run = %id, "run not started: it is no longer queued");
    }
    Ok(started)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::RunStatus::*;

    #[test]
    fn only_the_drawn_moves_are_allowed() {
        // (from, to, allowed)
        let table = [
            (AwaitingApproval, Queued, true),
            (AwaitingApproval, Running, false),
            (AwaitingApproval, Denied, true),
            (AwaitingApproval, Expired, true),
            (AwaitingApproval, Cancelled, true),
            (AwaitingApproval, Succeeded, false),
            (Queued, Running, true),
            (Queued, Cancelled, true),
            (Queued, Interrupted, true),
            (Queued, Failed, true),
            (Queued, Succeeded, false),
            (Queued, AwaitingApproval, false),
            (Running, Succeeded, true),
            (Running, Cancelled, true),
            (Running, Interrupted, true),
            (Running, Queued, false),
            (Running, Running, false),
        ];
        for (from, to, want) in table {
            assert_eq!(allowed(from, to), want, "{from} → {to}");
        }
        // Nothing leaves a final status.
        for from in RunStatus::ALL.iter().filter(|s| s.is_final()) {
            for to in RunStatus::ALL {
                assert!(!allowed(*from, *to), "{from} → {to}");
            }
        }
    }

    #[test]
    fn a_gate_closed_without_approval_ends_the_run_in_its_terms() {
        use crate::state::GateStatus as G;
        // (on_expiry: deny, gate status, run ends as)
        let table = [
            (false, Some(G::Denied), Denied),
            (true, Some(G::Denied), Denied),
            (false, Some(G::Expired), Expired),
            (true, Some(G::Expired), Denied),
            (true, Some(G::Closed), Expired),
            (false, None, Expired),
        ];
        for (denies, gate, want) in table {
            assert_eq!(after_gate(denies, gate), want, "{denies} {gate:?}");
        }
    }

    #[test]
    fn an_ending_closes_what_is_left_in_its_own_terms() {
        assert_eq!(leftover_hosts(Interrupted), HostStatus::Interrupted);
        assert_eq!(leftover_hosts(Cancelled), HostStatus::NotStarted);
        assert_eq!(leftover_gates(Cancelled), GateStatus::Cancelled);
        assert_eq!(leftover_gates(Failed), GateStatus::Closed);
    }
}
