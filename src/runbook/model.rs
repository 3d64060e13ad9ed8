//! The runbook model: the raw YAML shape (unknown keys rejected) and the validated form.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Role;
use crate::policy::scope::{CommandPattern, HttpRule};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRunbook {
    pub name: String,
    pub description: Option<String>,
    pub owner: String,
    #[serde(default)]
    pub params: BTreeMap<String, ParamSpec>,
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default)]
    pub scope: RawScope,
    pub allowed: Option<RawAllowed>,
    pub approval: Option<RawApproval>,
    pub rollout: Option<RawRollout>,
    pub schedule: Option<ScheduleSpec>,
    #[serde(default)]
    pub emergency: bool,
    pub timeout: Option<String>,
    pub action_timeout: Option<String>,
    pub output: Option<RawOutput>,
    pub script: Option<String>,
    pub script_file: Option<PathBuf>,
    #[serde(default)]
    pub then: Vec<super::chain::RawFollowUp>,
    /// How the business-review report counts this runbook's runs.
    pub report: Option<ReportAs>,
}

/// What a runbook's runs are to the business-review report (`report:` in the runbook).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportAs {
    /// Patching: each host that emits `packages_changed` was patched.
    Patch,
    /// A backup restore test: each host that emits `restore_ms` passed.
    RestoreTest,
    /// Isolating a device in an incident.
    Isolation,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScope {
    #[serde(default)]
    pub commands: Vec<String>,
    #[serde(default)]
    pub http: Vec<String>,
    #[serde(default)]
    pub secrets: Vec<String>,
}

/// `output:` limits as written: a byte count (`1048576`) or a size (`16MiB`, `512KiB`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOutput {
    pub action_max: Option<serde_yaml::Value>,
    pub run_max: Option<serde_yaml::Value>,
    pub script_max: Option<serde_yaml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAllowed {
    #[serde(default)]
    pub parties: Vec<String>,
    #[serde(default)]
    pub roles: Vec<Role>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApproval {
    pub from: Option<String>,
    #[serde(default = "one")]
    pub quorum: u32,
    pub expires: Option<String>,
    pub on_expiry: Option<OnExpiry>,
    pub lead: Option<String>,
    pub standing: Option<String>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRollout {
    pub parallel: Option<usize>,
    pub batch: Option<serde_yaml::Value>,
    pub max_failures: Option<serde_yaml::Value>,
}

/// A declared parameter.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    #[serde(rename = "type")]
    pub kind: ParamType,
    #[serde(default)]
    pub default: Option<serde_yaml::Value>,
    #[serde(default)]
    pub description: Option<String>,
}

/// A parameter's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Int,
    Bool,
    List,
}

impl ParamType {
    /// Checks or converts `v` to this type. Strings from the command line (`-p k=v`) are
    /// converted: `int` parses, `bool` takes true/false, `list` splits on commas.
    pub fn coerce(self, v: &Value) -> Result<Value, String> {
        match (self, v) {
            (ParamType::String, Value::String(_)) => Ok(v.clone()),
            (ParamType::String, Value::Number(n)) => Ok(Value::String(n.to_string())),
            (ParamType::Int, Value::Number(n)) if n.is_i64() => Ok(v.clone()),
            (ParamType::Int, Value::String(s)) => s
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| format!("`{s}` is not an integer")),
            (ParamType::Bool, Value::Bool(_)) => Ok(v.clone()),
            (ParamType::Bool, Value::String(s)) => match s.as_str() {
                "true" | "yes" | "1" => Ok(Value::Bool(true)),
                "false" | "no" | "0" => Ok(Value::Bool(false)),
                _ => Err(format!("`{s}` is not true or false")),
            },
            (ParamType::List, Value::Array(items)) => {
                if items
                    .iter()
                    .all(|i| i.is_string() || i.is_number() || i.is_boolean())
                {
                    Ok(Value::Array(
                        items
                            .iter()
                            .map(|i| match i {
                                Value::String(_) => i.clone(),
                                other => Value::String(other.to_string()),
                            })
                            .collect(),
                    ))
                } else {
                    Err("a list holds plain values (strings, numbers, booleans)".into())
                }
            }
            (ParamType::List, Value::String(s)) => Ok(Value::Array(
                s.split(',')
                    .map(str::trim)
                    .filter(|x| !x.is_empty())
                    .map(|x| Value::String(x.to_string()))
                    .collect(),
            )),
            (t, other) => Err(format!("expected {}, got {}", t.name(), json_kind(other))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            ParamType::String => "a string",
            ParamType::Int => "an integer",
            ParamType::Bool => "true or false",
            ParamType::List => "a list",
        }
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// Who may start a runbook.
#[derive(Debug, Clone, Serialize)]
pub struct Allowed {
    pub parties: Vec<String>,
    pub roles: Vec<Role>,
}

/// What to do when a pending approval expires.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnExpiry {
    /// End the run `expired` (the default).
    #[default]
    Expire,
    /// End the run `denied`.
    Deny,
}

/// The runbook's approval section.
#[derive(Debug, Clone, Serialize)]
pub struct Approval {
    pub from: Option<String>,
    pub quorum: u32,
    #[serde(with = "secs")]
    pub expires: Duration,
    pub on_expiry: OnExpiry,
    #[serde(with = "secs")]
    pub lead: Duration,
    #[serde(skip)]
    pub standing: Option<Duration>,
}

mod secs {
    use std::time::Duration;
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}

/// A count or a percentage of the targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Amount {
    Count(usize),
    Percent(u8),
}

impl Amount {
    pub(super) fn parse(v: &serde_yaml::Value) -> Result<Amount, String> {
        match v {
            serde_yaml::Value::Number(n) => n
                .as_u64()
                .map(|n| Amount::Count(n as usize))
                .ok_or_else(|| "expected a whole number or a percentage like 25%".into()),
            serde_yaml::Value::String(s) => {
                let p = s
                    .strip_suffix('%')
                    .and_then(|p| p.trim().parse::<u8>().ok())
                    .filter(|p| *p <= 100);
                p.map(Amount::Percent)
                    .ok_or_else(|| format!("`{s}` is not a whole number or a percentage like 25%"))
            }
            _ => Err("expected a whole number or a percentage like 25%".into()),
        }
    }

    /// The amount as a count of `total` hosts (percentages round up, at least 1 for >0%).
    pub fn of(self, total: usize) -> usize {
        match self {
            Amount::Count(n) => n,
            Amount::Percent(p) => (total * p as usize).div_ceil(100),
        }
    }
}

/// How much output a run keeps (`output:`). Past a limit output is dropped, with one
/// marker line in the log and an `output_truncated` audit record; the command and the run
/// go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OutputLimits {
    /// Bytes of one action's output (stdout and stderr together) stored in the log.
    pub action_max: u64,
    /// Bytes of output (commands and `log()`) stored for the whole run.
    pub run_max: u64,
    /// Bytes of each of stdout and stderr handed back to the script by `sh()`, and the
    /// longest `log()` message.
    pub script_max: u64,
}

impl OutputLimits {
    const MIB: u64 = 1024 * 1024;
}

impl Default for OutputLimits {
    /// 16 MiB an action holds the longest outputs operators read (a verbose package
    /// upgrade is a few MiB) while a runaway loop stops at a size a browser still shows;
    /// 256 MiB a run is 200 hosts of a 1 MiB listing with room to spare, and caps what one
    /// run can add to the state store. 16 KiB to the script covers what scripts parse (`df`,
    /// `systemctl`, `dpkg --audit`, an `apt-get -s` of a few packages) and is held for every
    /// host at once while commands run: 200 hosts × 16 KiB is 3 MB of the daemon's 64 MB
    /// budget, where 1 MiB would be 200 MB.
    fn default() -> Self {
        OutputLimits {
            action_max: 16 * Self::MIB,
            run_max: 256 * Self::MIB,
            script_max: 16 * 1024,
        }
    }
}

/// How a run fans out over its targets.
#[derive(Debug, Clone, Serialize)]
pub struct Rollout {
    pub parallel: usize,
    pub batch: Option<Amount>,
    pub max_failures: Option<Amount>,
}

impl Rollout {
    /// Hosts run at once when the runbook does not say.
    pub const DEFAULT_PARALLEL: usize = 10;
}

impl Default for Rollout {
    fn default() -> Self {
        Rollout {
            parallel: Rollout::DEFAULT_PARALLEL,
            batch: None,
            max_failures: None,
        }
    }
}

/// The `schedule` section, kept as written; the scheduler interprets it.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// A crontab line; exactly one of `cron` and `rrule` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// An RFC 5545 recurrence rule (`FREQ=MONTHLY;BYDAY=2TU;BYHOUR=22`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rrule: Option<String>,
    /// The RRULE's DTSTART, local wall-clock time in `timezone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtstart: Option<String>,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub window: Option<String>,
    #[serde(default)]
    pub overlap: Option<String>,
    #[serde(default)]
    pub misfire: Option<String>,
    #[serde(default)]
    pub jitter: Option<String>,
    #[serde(default)]
    pub blackout: Vec<String>,
    /// Shifts every slot on the wall clock (`4d`, `-1d`, `36h`).
    #[serde(default)]
    pub offset: Option<String>,
}

impl ScheduleSpec {
    /// Checks the fields that can be checked without a clock: (field, message) on error.
    pub(super) fn check(&self) -> Result<(), (String, String)> {
        if let Some(tz) = &self.timezone {
            tz.parse::<chrono_tz::Tz>().map_err(|_| {
                (
                    "timezone".to_string(),
                    format!("`{tz}` is not an IANA time zone"),
                )
            })?;
        }
        for (field, v) in [("window", &self.window), ("jitter", &self.jitter)] {
            if let Some(v) = v {
                super::parse_duration(v).map_err(|m| (field.to_string(), m))?;
            }
        }
        match self.overlap.as_deref() {
            None | Some("skip" | "queue") => {}
            Some(o) => return Err(("overlap".into(), format!("`{o}` is not skip or queue"))),
        }
        match self.misfire.as_deref() {
            None | Some("skip" | "run_once") => {}
            Some(o) => return Err(("misfire".into(), format!("`{o}` is not skip or run_once"))),
        }
        match (&self.cron, &self.rrule) {
            (Some(_), Some(_)) | (None, None) => {
                return Err((
                    String::new(),
                    "give exactly one of `cron` (a crontab line) or `rrule` (an RFC 5545 \
                     recurrence rule)"
                        .into(),
                ))
            }
            _ => {}
        }
        if let Some(d) = &self.dtstart {
            if self.rrule.is_none() {
                return Err((
                    "dtstart".into(),
                    "`dtstart` is for `rrule` schedules".into(),
                ));
            }
            crate::scheduler::rrule::parse_dtstart(d).map_err(|m| ("dtstart".into(), m))?;
        }
        if let Some(o) = &self.offset {
            crate::scheduler::parse_offset(o).map_err(|m| ("offset".to_string(), m))?;
        }
        let field = if self.rrule.is_some() {
            "rrule"
        } else {
            "cron"
        };
        crate::scheduler::Schedule::parse(self).map_err(|m| (field.to_string(), m))?;
        Ok(())
    }
}

/// What a runbook may touch.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub commands: Vec<CommandPattern>,
    pub http: Vec<HttpRule>,
    pub secrets: Vec<String>,
}

impl Scope {
    /// The scope as written, for plans, digests and approval pages.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "commands": self.commands.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            "http": self.http.iter().map(|h| h.as_str()).collect::<Vec<_>>(),
            "secrets": self.secrets,
        })
    }
}

/// A validated runbook.
#[derive(Debug, Clone)]
pub struct Runbook {
    pub name: String,
    pub description: String,
    pub owner: String,
    pub params: BTreeMap<String, ParamSpec>,
    pub targets: Vec<String>,
    pub scope: Scope,
    pub allowed: Allowed,
    pub approval: Option<Approval>,
    pub rollout: Rollout,
    pub schedule: Option<ScheduleSpec>,
    pub emergency: bool,
    pub timeout: Duration,
    /// The limit of one action (`sh`, `http`), including the SSH connection it may open.
    pub action_timeout: Option<Duration>,
    /// How much output is kept.
    pub output: OutputLimits,
    pub script: String,
    /// The file it was loaded from.
    pub path: PathBuf,
    /// Hex SHA-256 of the YAML bytes and the script file bytes.
    pub version: String,
    /// Follow-up runs started when this one ends (`then:`).
    pub then: Vec<super::chain::FollowUp>,
    /// How the business-review report counts its runs (`report:`).
    pub report: Option<ReportAs>,
}
