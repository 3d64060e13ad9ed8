//! The typed states of a run, of each host of a run, and of an approval gate. Each is
//! stored and shown as the same lowercase string tandem has always used (`awaiting_approval`,
//! `not_started`, …), so the API, stored rows and exported audit logs do not change; the
//! code only ever names the enum. Which run transitions are allowed, and what ending a run
//! does, is decided in one place: `run::lifecycle`.

/// A stored string that is not one of a state's names: a bad row, never silently defaulted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a {kind}")]
pub struct UnknownState {
    pub kind: &'static str,
    pub value: String,
}

/// Declares a state enum with its one string per variant, `as_str`, `FromStr`, `Display`,
/// serde (as the string) and `ALL` (for tests that round-trip every name).
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident, $kind:literal { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The stored and shown name.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::state::UnknownState;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::state::UnknownState { kind: $kind, value: s.to_string() }),
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl rusqlite::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::from(self.as_str()))
            }
        }

        impl $crate::store::ToParam for $name {
            fn to_param(&self) -> $crate::store::Param<'_> {
                $crate::store::Param::Text(self.as_str())
            }
        }

        impl $crate::store::Column for $name {
            fn from_lite(r: &rusqlite::Row<'_>, i: usize) -> Result<Self, $crate::store::StoreError> {
                $crate::store::state_column(r.get(i)?, i)
            }
            fn from_pg(r: &postgres::Row, i: usize) -> Result<Self, $crate::store::StoreError> {
                $crate::store::state_column(r.try_get(i)?, i)
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                let s = v.as_str()?;
                s.parse().map_err(|e| rusqlite::types::FromSqlError::Other(Box::new(e)))
            }
        }
    };
}
pub(crate) use string_enum;

string_enum! {
    /// A run's status (SPEC §4).
    RunStatus, "run status" {
        /// Accepted (approved, or needing no approval) and not started yet.
        Queued = "queued",
        /// Waiting behind its start gate.
        AwaitingApproval = "awaiting_approval",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        Cancelled = "cancelled",
        /// The daemon stopped while the run was under way; nothing was re-run (rule 8).
        Interrupted = "interrupted",
        Denied = "denied",
        Expired = "expired",
    }
}

impl RunStatus {
    /// Whether a run in this status is over.
    pub const fn is_final(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded
                | RunStatus::Failed
                | RunStatus::Cancelled
                | RunStatus::Interrupted
                | RunStatus::Denied
                | RunStatus::Expired
        )
    }

    /// The statuses a run has not started from yet: it may still be cancelled, denied or
    /// expired without anything having run.
    pub const NOT_STARTED: &'static [RunStatus] = &[RunStatus::AwaitingApproval, RunStatus::Queued];
}

string_enum! {
    /// One host's part of a run.
    HostStatus, "host status" {
        Pending = "pending",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        Cancelled = "cancelled",
        /// The run ended before this host's turn.
        NotStarted = "not_started",
        /// The daemon stopped while this host ran.
        Interrupted = "interrupted",
    }
}

impl HostStatus {
    /// Whether the host is done (has a finish time).
    pub const fn is_final(self) -> bool {
        !matches!(self, HostStatus::Pending | HostStatus::Running)
    }
}

string_enum! {
    /// An approval gate's status.
    GateStatus, "gate status" {
        Pending = "pending",
        Approved = "approved",
        Denied = "denied",
        Expired = "expired",
        /// The daemon stopped while the gate was open.
        Interrupted = "interrupted",
        /// The run was cancelled while the gate was open.
        Cancelled = "cancelled",
        /// The run ended otherwise (a failure, a timeout) while the gate was open.
        Closed = "closed",
        /// A standing approval covered the slot the gate was opened for.
        Superseded = "superseded",
    }
}

string_enum! {
    /// An action's record: intended (rule 8: committed before it runs), done, or left in
    /// flight by a stop.
    ActionStatus, "action status" {
        Intent = "intent",
        Done = "done",
        OutcomeUnknown = "outcome_unknown",
    }
}

string_enum! {
    /// The after-the-fact review a break-glass run owes its owners (rule 6).
    ReviewStatus, "review status" {
        Open = "open",
        Acknowledged = "acknowledged",
    }
}

string_enum! {
    /// One approver's decision on a gate.
    Decision, "decision" {
        Approve = "approve",
        Deny = "deny",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;
    use std::str::FromStr;

    fn round_trips<T>(all: &[T])
    where
        T: Copy + PartialEq + fmt::Debug + FromStr + serde::Serialize + fmt::Display,
        <T as FromStr>::Err: fmt::Debug,
    {
        for v in all {
            let s = v.to_string();
            assert_eq!(s.parse::<T>().unwrap(), *v);
            assert_eq!(serde_json::to_value(v).unwrap(), serde_json::json!(s));
        }
    }

    #[test]
    fn every_state_round_trips_through_its_stored_name() {
        round_trips(RunStatus::ALL);
        round_trips(HostStatus::ALL);
        round_trips(GateStatus::ALL);
        round_trips(ActionStatus::ALL);
        round_trips(ReviewStatus::ALL);
        round_trips(Decision::ALL);
        assert_eq!(RunStatus::AwaitingApproval.as_str(), "awaiting_approval");
        assert_eq!(HostStatus::NotStarted.as_str(), "not_started");
        assert!("bogus".parse::<RunStatus>().is_err());
    }

    #[test]
    fn final_statuses_are_the_six_endings() {
        let ends: Vec<&str> = RunStatus::ALL
            .iter()
            .filter(|s| s.is_final())
            .map(|s| s.as_str())
            .collect();
        assert_eq!(
            ends,
            [
                "succeeded",
                "failed",
                "cancelled",
                "interrupted",
                "denied",
                "expired"
            ]
        );
    }
}
