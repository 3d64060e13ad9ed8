//! Every audit event name (SPEC §8 and beyond). Records are written with an [`Event`];
//! a record read back keeps its `event` as the text stored, so a log written by another
//! version, or tampered with, still verifies or fails on its hash rather than on its name.

crate::state::string_enum! {
    /// What an audit record says happened.
    Event, "audit event" {
        /// A run was asked for: runbook, params, targets, digest, slot.
        RunRequested = "run_requested",
        ApprovalRequested = "approval_requested",
        ApprovalGranted = "approval_granted",
        ApprovalDenied = "approval_denied",
        ApprovalExpired = "approval_expired",
        /// A decision refused (wrong party, separation of duties, digest mismatch).
        ApprovalRefused = "approval_refused",
        /// A gate's quorum is met.
        ApprovalComplete = "approval_complete",
        /// A standing approval covers a scheduled run.
        ApprovalStanding = "approval_standing",
        ApprovalStandingGranted = "approval_standing_granted",
        RunStarted = "run_started",
        /// Rule 8: committed before the action runs.
        ActionIntent = "action_intent",
        ActionResult = "action_result",
        /// An action refused because its host is frozen (rule 11).
        ActionFrozen = "action_frozen",
        ScopeDenied = "scope_denied",
        HostkeyMismatch = "hostkey_mismatch",
        BreakGlass = "break_glass",
        ReviewRequested = "review_requested",
        ReviewRefused = "review_refused",
        ReviewAcknowledged = "review_acknowledged",
        /// A run ended; the only event that carries its final status.
        RunFinished = "run_finished",
        CancelRequested = "cancel_requested",
        /// A cancel refused by rule 11.
        CancelDenied = "cancel_denied",
        /// A run refused at submit (rule 1, break-glass, or a frozen target).
        StartDenied = "start_denied",
        HostFrozen = "host_frozen",
        HostUnfrozen = "host_unfrozen",
        /// A freeze or unfreeze refused (another party's host, or the wrong role).
        FreezeDenied = "freeze_denied",
        ConfigLoaded = "config_loaded",
        ConfigReloadFailed = "config_reload_failed",
        /// A calendar's `.ics` file could not be re-read; its last good version stays.
        CalendarReloadFailed = "calendar_reload_failed",
        SlotMissed = "slot_missed",
        SlotSkipped = "slot_skipped",
        /// The scheduler could not record what it did with a slot; the slot is not
        /// considered fired and is tried again.
        SlotFailed = "slot_failed",
        OutputTruncated = "output_truncated",
        /// A trigger's request was authenticated and started a run (one record per run).
        TriggerAccepted = "trigger_accepted",
        /// A trigger's request was refused: bad auth, stale timestamp, replay, bad body, no
        /// match, bad params or targets. The detail names the reason, never the body's secrets.
        TriggerRefused = "trigger_refused",
        /// An alert seen within the trigger's dedup window: the existing runs are answered.
        TriggerDeduplicated = "trigger_deduplicated",
        /// The trigger's rate limit was reached: no run (429).
        TriggerRateLimited = "trigger_rate_limited",
        /// A follow-up run was requested; on the parent, with the child's id.
        ChainStarted = "chain_started",
        /// A follow-up could not start (rule 1, params, depth, frozen host...); on the parent.
        ChainRefused = "chain_refused",
        /// A script published a value with `emit()`.
        Emitted = "emitted",
        /// An `emit()` value held a secret and was not kept.
        EmitWithheld = "emit_withheld",
        NotifySent = "notify_sent",
        NotifyFailed = "notify_failed",
        /// A checkpoint was signed; detail `{seq, head, ts}`.
        CheckpointSigned = "checkpoint_signed",
        /// A witness accepted a checkpoint; detail names its party and witness.
        CheckpointDelivered = "checkpoint_delivered",
        /// A witness could not be given a checkpoint after every retry.
        CheckpointDeliveryFailed = "checkpoint_delivery_failed",
    }
}

impl Event {
    /// Whether this is about checkpoints (they do not count towards the next checkpoint, or
    /// checkpoints would beget checkpoints).
    pub const fn is_checkpoint(self) -> bool {
        matches!(
            self,
            Event::CheckpointSigned | Event::CheckpointDelivered | Event::CheckpointDeliveryFailed
        )
    }

    /// Whether the stored name `event` is a checkpoint event.
    pub fn is_checkpoint_name(event: &str) -> bool {
        event.parse::<Event>().is_ok_and(Event::is_checkpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The events SPEC §8 names, by their stored names.
    const SPEC_EVENTS: &[&str] = &[
        "run_requested",
        "approval_requested",
        "approval_granted",
        "approval_denied",
        "approval_expired",
        "run_started",
        "action_intent",
        "action_result",
        "scope_denied",
        "hostkey_mismatch",
        "break_glass",
        "run_finished",
        "config_loaded",
    ];

    #[test]
    fn every_event_round_trips_and_the_spec_events_are_all_there() {
        for e in Event::ALL {
            assert_eq!(e.as_str().parse::<Event>(), Ok(*e));
            assert_eq!(
                serde_json::to_value(e).unwrap(),
                serde_json::json!(e.as_str())
            );
        }
        for name in SPEC_EVENTS {
            let e: Event = name.parse().unwrap();
            assert_eq!(e.as_str(), *name);
        }
        assert!("no_such_event".parse::<Event>().is_err());
        assert!(Event::is_checkpoint_name("checkpoint_signed"));
        assert!(!Event::is_checkpoint_name("run_started"));
    }
}
