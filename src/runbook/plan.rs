//! A plan: exactly what a run will do, and its digest (SPEC §1). An approval approves one
//! digest; any change to its inputs makes a new digest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Runbook;
use crate::config::{Config, Host, Transport};
use crate::policy::ApprovalRequirement;

/// Who asked for a run: a user of a party, or `system` acting for a runbook's owner.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Initiator {
    pub user: String,
    pub party: String,
}

/// A target host as planned, with the host key that will be required.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedHost {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    pub owner: String,
    pub transport: Transport,
    pub host_key: Option<String>,
    pub tags: Vec<String>,
}

/// Everything a run is bound to. Stored with the run as JSON and read back into this type.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub runbook: String,
    pub version: String,
    pub params: BTreeMap<String, Value>,
    pub targets: Vec<PlannedHost>,
    pub scope: Value,
    pub initiator: Initiator,
    pub slot: Option<String>,
    /// Every party owning a target host, or an API or a secret in the scope (rule 3, rule
    /// 10), sorted, each once. Part of the digest input, unlike `approvals`: the targets bind
    /// their hosts' owners, but an API's or a secret's owner lives only in `tandem.yaml`, and
    /// an approval given by the old owner must not carry over when it changes hands.
    #[serde(default)]
    pub owners: Vec<String>,
    /// Who must approve; derived from the above, so not part of the digest input.
    #[serde(default)]
    pub approvals: Vec<ApprovalRequirement>,
    /// The hosts or `tag:NAME` the run was narrowed to (`run --limit`, a trigger's
    /// target); empty: all of the runbook's targets. Part of the digest when not empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limit: Vec<String>,
    /// The alert that started the run (a trigger's run): shown to approvers, not bound
    /// by the digest (the initiator `trigger:NAME` and the params are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Value>,
    /// Hex SHA-256 of the canonical JSON of the bound fields.
    pub digest: String,
}

/// Why a plan could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("unknown parameter `{0}`")]
    UnknownParam(String),
    #[error("parameter `{name}`: {message}")]
    BadParam { name: String, message: String },
    #[error("missing parameter `{0}` (it has no default)")]
    MissingParam(String),
    #[error("target `{0}` is not in the inventory")]
    UnknownTarget(String),
    #[error("limit `{0}` is not among the runbook's targets")]
    LimitOutside(String),
}

/// Resolves `given` against the runbook's declared params: unknown names are refused,
/// values are converted to their declared type, defaults fill the rest.
pub fn resolve_params(
    rb: &Runbook,
    given: &Map<String, Value>,
) -> Result<BTreeMap<String, Value>, PlanError> {
    let mut out = BTreeMap::new();
    for (name, value) in given {
        let spec = rb
            .params
            .get(name)
            .ok_or_else(|| PlanError::UnknownParam(name.clone()))?;
        let v = spec
            .kind
            .coerce(value)
            .map_err(|message| PlanError::BadParam {
                name: name.clone(),
                message,
            })?;
        out.insert(name.clone(), v);
    }
    for (name, spec) in &rb.params {
        if out.contains_key(name) {
            continue;
        }
        let default = spec
            .default
            .as_ref()
            .ok_or_else(|| PlanError::MissingParam(name.clone()))?;
        let v = spec
            .kind
            .coerce(&super::yaml_to_json(default))
            .map_err(|message| PlanError::BadParam {
                name: name.clone(),
                message,
            })?;
        out.insert(name.clone(), v);
    }
    Ok(out)
}

/// Resolves the runbook's `targets` (host names and `tag:NAME`) against the inventory, in
/// order of first mention, each host once.
pub fn resolve_targets<'c>(rb: &Runbook, config: &'c Config) -> Result<Vec<&'c Host>, PlanError> {
    let mut out: Vec<&Host> = Vec::new();
    for t in &rb.targets {
        let found: Vec<&Host> = match t.strip_prefix("tag:") {
            Some(tag) => config
                .inventory
                .iter()
                .filter(|h| h.tags.iter().any(|x| x == tag))
                .collect(),
            None => vec![config
                .host(t)
                .ok_or_else(|| PlanError::UnknownTarget(t.clone()))?],
        };
        for h in found {
            if !out.iter().any(|o| o.name == h.name) {
                out.push(h);
            }
        }
    }
    Ok(out)
}

impl Plan {
    /// Who owns the targets, counted: `[("internal", 2), ("provider", 1)]`, most first.
    pub fn target_owner_counts(&self) -> Vec<(String, usize)> {
        let mut out: Vec<(String, usize)> = Vec::new();
        for t in &self.targets {
            match out.iter_mut().find(|(p, _)| *p == t.owner) {
                Some((_, n)) => *n += 1,
                None => out.push((t.owner.clone(), 1)),
            }
        }
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out
    }

    /// The reasons of approval `a` with its `owns HOST` reasons counted into one,
    /// `owns 2 of 3 targets`, where the first of them stood: long lists read as summaries.
    pub fn reasons_summary(&self, a: &crate::policy::ApprovalRequirement) -> Vec<String> {
        let names: std::collections::HashSet<&str> =
            self.targets.iter().map(|t| t.name.as_str()).collect();
        let is_host = |r: &str| r.strip_prefix("owns ").is_some_and(|h| names.contains(h));
        let hosts = a.reasons.iter().filter(|r| is_host(r)).count();
        let mut out = Vec::new();
        let mut counted = false;
        for r in &a.reasons {
            if !is_host(r) {
                out.push(r.clone());
            } else if !counted {
                counted = true;
                out.push(crate::policy::matrix::owns_of(hosts, self.targets.len()));
            }
        }
        out
    }
    /// The parties that own something the plan may touch (rule 11): the owners of its
    /// target hosts and its `owners` (owners of the APIs and secrets in its scope).
    pub fn touched_owners(&self) -> std::collections::BTreeSet<String> {
        self.targets
            .iter()
            .map(|t| t.owner.clone())
            .chain(self.owners.iter().cloned())
            .collect()
    }
}

/// Makes the plan for one run of `rb`.
pub fn make_plan(
    rb: &Runbook,
    config: &Config,
    given: &Map<String, Value>,
    initiator: Initiator,
    slot: Option<String>,
) -> Result<Plan, PlanError> {
    make_limited_plan(rb, config, given, initiator, slot, &[])
}

/// Narrows the runbook's resolved targets to `limit` (host names and `tag:NAME`). A host
/// not in the inventory, or a limit item that selects none of the targets, is refused:
/// a limit only narrows, never adds.
pub fn apply_limit<'c>(
    hosts: Vec<&'c Host>,
    config: &Config,
    limit: &[String],
) -> Result<Vec<&'c Host>, PlanError> {
    if limit.is_empty() {
        return Ok(hosts);
    }
    let mut keep = std::collections::BTreeSet::new();
    for item in limit {
        let picked: Vec<&str> = match item.strip_prefix("tag:") {
            Some(tag) => hosts
                .iter()
                .filter(|h| h.tags.iter().any(|t| t == tag))
                .map(|h| h.name.as_str())
                .collect(),
            None => {
                if config.host(item).is_none() {
                    return Err(PlanError::UnknownTarget(item.clone()));
                }
                hosts
                    .iter()
                    .filter(|h| h.name == *item)
                    .map(|h| h.name.as_str())
                    .collect()
            }
        };
        if picked.is_empty() {
            return Err(PlanError::LimitOutside(item.clone()));
        }
        keep.extend(picked.into_iter().map(str::to_string));
    }
    Ok(hosts
        .into_iter()
        .filter(|h| keep.contains(&h.name))
        .collect())
}

/// Makes the plan for one run of `rb` narrowed to `limit` (see [`apply_limit`]).
pub fn make_limited_plan(
    rb: &Runbook,
    config: &Config,
    given: &Map<String, Value>,
    initiator: Initiator,
    slot: Option<String>,
    limit: &[String],
) -> Result<Plan, PlanError> {
    let params = resolve_params(rb, given)?;
    let hosts = apply_limit(resolve_targets(rb, config)?, config, limit)?;
    let owned = crate::policy::scope_owned(rb, config);
    let approvals = crate::policy::required_approvals(rb, &hosts, &owned, &initiator.party);
    let owners: Vec<String> = hosts
        .iter()
        .map(|h| h.owner.clone())
        .chain(owned.into_iter().map(|o| o.owner))
        .collect::<std::collections::BTreeSet<String>>()
        .into_iter()
        .collect();
    let targets: Vec<PlannedHost> = hosts
        .iter()
        .map(|h| PlannedHost {
            name: h.name.clone(),
            address: h.address.clone(),
            port: h.port,
            user: h.user.clone(),
            owner: h.owner.clone(),
            transport: h.transport,
            host_key: h.host_key.as_ref().map(|k| k.to_known_hosts()),
            tags: h.tags.clone(),
        })
        .collect();
    let mut plan = Plan {
        runbook: rb.name.clone(),
        version: rb.version.clone(),
        params,
        targets,
        scope: rb.scope.to_json(),
        initiator,
        slot,
        owners,
        approvals,
        limit: limit.to_vec(),
        trigger: None,
        digest: String::new(),
    };
    plan.digest = digest(&plan);
    Ok(plan)
}

/// SHA-256 over the canonical JSON (sorted keys, no spaces) of the fields an approval binds.
pub fn digest(plan: &Plan) -> String {
    let mut bound = serde_json::json!({
        "runbook": plan.runbook,
        "version": plan.version,
        "params": plan.params,
        "targets": plan.targets,
        "scope": plan.scope,
        "initiator": plan.initiator,
        "slot": plan.slot,
        "owners": plan.owners,
    });
    // Added only when present, so the digest of an unlimited plan is what it always was.
    if !plan.limit.is_empty() {
        bound["limit"] = serde_json::json!(plan.limit);
    }
    crate::audit::sha256_hex(crate::audit::canonical_json(&bound).as_bytes())
}
