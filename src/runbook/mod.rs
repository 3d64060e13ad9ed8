//! Runbook YAML → validated model ([`Runbook`]), params and targets resolution, and the plan
//! with its digest ([`plan`]). Pure: no I/O besides reading the runbook files.

pub mod chain;
mod model;
pub mod plan;

pub use model::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::Config;
use crate::error::{LoadError, LoadErrors};
use crate::policy::scope::{CommandPattern, HttpRule};
use crate::yaml;

/// The runbooks of a runbooks folder, by name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub runbooks: BTreeMap<String, Runbook>,
}

impl Catalog {
    /// Loads every `*.yaml` / `*.yml` in `dir`, checking each against `config`.
    /// All problems of all files are reported together.
    pub fn load_dir(dir: &Path, config: &Config) -> Result<Catalog, LoadErrors> {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| LoadError::at(dir, "", format!("cannot read runbooks folder: {e}")))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect();
        files.sort();
        Catalog::load_files(&files, config)
    }

    /// Loads the given runbook files.
    pub fn load_files(files: &[PathBuf], config: &Config) -> Result<Catalog, LoadErrors> {
        let mut errors = Vec::new();
        let mut runbooks: BTreeMap<String, Runbook> = BTreeMap::new();
        for file in files {
            match Runbook::load(file, config) {
                Ok(rb) => {
                    if let Some(other) = runbooks.get(&rb.name) {
                        errors.push(LoadError::at(
                            file,
                            "name",
                            format!(
                                "runbook `{}` is also defined in {}",
                                rb.name,
                                other.path.display()
                            ),
                        ));
                    } else {
                        runbooks.insert(rb.name.clone(), rb);
                    }
                }
                Err(e) => errors.extend(e.0),
            }
        }
        // Follow-ups reach across files: checked once every runbook is in.
        let some_failed = !errors.is_empty();
        errors.extend(chain::check_catalog(&runbooks, some_failed));
        if errors.is_empty() {
            Ok(Catalog { runbooks })
        } else {
            Err(LoadErrors(errors))
        }
    }

    /// The runbook with this name.
    pub fn get(&self, name: &str) -> Option<&Runbook> {
        self.runbooks.get(name)
    }
}

impl Runbook {
    /// Reads, parses and validates one runbook file against `config`.
    pub fn load(path: &Path, config: &Config) -> Result<Runbook, LoadErrors> {
        let bytes = std::fs::read(path)
            .map_err(|e| LoadError::at(path, "", format!("cannot read runbook: {e}")))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| LoadError::at(path, "", "runbook is not valid UTF-8"))?;
        let raw: RawRunbook = yaml::parse(path, &text)?;
        let mut errors = Vec::new();
        // Locate by field path; fall back to the first line showing the offending text.
        let err = |field: String, needle: &str, message: String| {
            let mut e = yaml::error_at(path, &text, &field, message);
            e.line = yaml::refine_line(&text, e.line, needle);
            e
        };
        let party_known = |p: &str| config.parties.iter().any(|q| q == p);

        if raw.name.is_empty()
            || !raw
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            errors.push(err(
                "name".into(),
                "name:",
                "name must be non-empty letters, digits, `-` or `_`".into(),
            ));
        }
        if !party_known(&raw.owner) {
            errors.push(err(
                "owner".into(),
                "owner:",
                format!("unknown party `{}`", raw.owner),
            ));
        }

        // Params: types and defaults agree.
        for (name, spec) in &raw.params {
            if let Some(default) = &spec.default {
                let json = yaml_to_json(default);
                if let Err(m) = spec.kind.coerce(&json) {
                    errors.push(err(format!("params.{name}.default"), name, m));
                }
            }
        }

        // Targets name hosts or tags that exist.
        for (i, t) in raw.targets.iter().enumerate() {
            let known = match t.strip_prefix("tag:") {
                Some(tag) => config
                    .inventory
                    .iter()
                    .any(|h| h.tags.iter().any(|x| x == tag)),
                None => config.host(t).is_some(),
            };
            if !known {
                let what = if t.starts_with("tag:") {
                    "no host has tag"
                } else {
                    "unknown host"
                };
                errors.push(err(
                    format!("targets[{i}]"),
                    t,
                    format!("{what} `{}`", t.trim_start_matches("tag:")),
                ));
            }
        }

        // Scope patterns parse; secrets exist.
        let mut commands = Vec::new();
        for (i, c) in raw.scope.commands.iter().enumerate() {
            match CommandPattern::new(c) {
                Ok(p) => commands.push(p),
                Err(m) => errors.push(err(format!("scope.commands[{i}]"), c, m)),
            }
        }
        let mut http = Vec::new();
        for (i, h) in raw.scope.http.iter().enumerate() {
            match HttpRule::parse(h) {
                // Rule 3: every URL a runbook may call belongs to a declared API, whose
                // owner approves cross-party runs.
                Ok(r) if config.apis_containing(r.prefix()).next().is_none() => {
                    let declared: Vec<String> = config
                        .apis
                        .values()
                        .map(|a| format!("{} = {}", a.name, a.base_url))
                        .collect();
                    errors.push(err(
                        format!("scope.http[{i}]"),
                        h,
                        format!(
                            "`{}` is outside every API declared in tandem.yaml `apis:` ({}); \
                             declare its API with an owner",
                            r.prefix(),
                            if declared.is_empty() {
                                "none declared".to_string()
                            } else {
                                declared.join(", ")
                            }
                        ),
                    ))
                }
                Ok(r) => http.push(r),
                Err(m) => errors.push(err(format!("scope.http[{i}]"), h, m)),
            }
        }
        for (i, s) in raw.scope.secrets.iter().enumerate() {
            if !config.secrets.contains_key(s) {
                errors.push(err(
                    format!("scope.secrets[{i}]"),
                    s,
                    format!("unknown secret `{s}`"),
                ));
            }
        }

        let allowed = match raw.allowed {
            Some(a) => {
                for (i, p) in a.parties.iter().enumerate() {
                    if !party_known(p) {
                        errors.push(err(
                            format!("allowed.parties[{i}]"),
                            p,
                            format!("unknown party `{p}`"),
                        ));
                    }
                }
                Allowed {
                    parties: if a.parties.is_empty() {
                        vec![raw.owner.clone()]
                    } else {
                        a.parties
                    },
                    roles: if a.roles.is_empty() {
                        vec![crate::config::Role::Operator]
                    } else {
                        a.roles
                    },
                }
            }
            None => Allowed {
                parties: vec![raw.owner.clone()],
                roles: vec![crate::config::Role::Operator],
            },
        };

        let approval = match raw.approval {
            Some(a) => {
                if let Some(p) = &a.from {
                    if !party_known(p) {
                        errors.push(err(
                            "approval.from".into(),
                            p,
                            format!("unknown party `{p}`"),
                        ));
                    }
                }
                if a.quorum == 0 {
                    errors.push(err(
                        "approval.quorum".into(),
                        "quorum",
                        "quorum must be at least 1".into(),
                    ));
                }
                let mut dur = |field: &str, v: &Option<String>| -> Option<Duration> {
                    let v = v.as_ref()?;
                    match parse_duration(v) {
                        Ok(d) => Some(d),
                        Err(m) => {
                            errors.push(err(format!("approval.{field}"), v, m));
                            None
                        }
                    }
                };
                Some(Approval {
                    from: a.from,
                    quorum: a.quorum.max(1),
                    expires: dur("expires", &a.expires).unwrap_or(Duration::from_secs(24 * 3600)),
                    on_expiry: a.on_expiry.unwrap_or_default(),
                    lead: dur("lead", &a.lead).unwrap_or(Duration::from_secs(24 * 3600)),
                    standing: dur("standing", &a.standing),
                })
            }
            None => None,
        };

        let rollout = match raw.rollout {
            Some(r) => {
                if r.parallel == Some(0) {
                    errors.push(err(
                        "rollout.parallel".into(),
                        "parallel",
                        "parallel must be at least 1".into(),
                    ));
                }
                Rollout {
                    parallel: r.parallel.unwrap_or(Rollout::DEFAULT_PARALLEL).max(1),
                    batch: parse_opt_amount(&r.batch, "rollout.batch", &mut errors, path, &text),
                    max_failures: parse_opt_amount(
                        &r.max_failures,
                        "rollout.max_failures",
                        &mut errors,
                        path,
                        &text,
                    ),
                }
            }
            None => Rollout::default(),
        };

        let timeout = match &raw.timeout {
            Some(t) => match parse_duration(t) {
                Ok(d) => d,
                Err(m) => {
                    errors.push(err("timeout".into(), "timeout:", m));
                    DEFAULT_TIMEOUT
                }
            },
            None => DEFAULT_TIMEOUT,
        };

        let action_timeout = match &raw.action_timeout {
            Some(t) => match parse_duration(t) {
                Ok(d) => Some(d),
                Err(m) => {
                    errors.push(err("action_timeout".into(), "action_timeout:", m));
                    None
                }
            },
            None => None,
        };

        let mut output = OutputLimits::default();
        if let Some(o) = &raw.output {
            for (key, value, slot) in [
                ("action_max", &o.action_max, &mut output.action_max),
                ("run_max", &o.run_max, &mut output.run_max),
                ("script_max", &o.script_max, &mut output.script_max),
            ] {
                if let Some(v) = value {
                    match parse_size(v) {
                        Ok(n) => *slot = n,
                        Err(m) => errors.push(err(format!("output.{key}"), key, m)),
                    }
                }
            }
        }

        if let Some(s) = &raw.schedule {
            if let Err((field, m)) = s.check() {
                let (path, needle) = if field.is_empty() {
                    ("schedule".to_string(), "schedule:".to_string())
                } else {
                    (format!("schedule.{field}"), format!("{field}:"))
                };
                errors.push(err(path, &needle, m));
            }
            for (i, c) in s.blackout.iter().enumerate() {
                if !config.calendars.contains_key(c) {
                    errors.push(err(
                        format!("schedule.blackout[{i}]"),
                        c,
                        format!("unknown calendar `{c}`"),
                    ));
                }
            }
        }

        // The script: inline or from a file beside the runbook; it must compile.
        let (script, script_bytes) = match (&raw.script, &raw.script_file) {
            (Some(s), None) => (s.clone(), Vec::new()),
            (None, Some(f)) => {
                let full = path.parent().unwrap_or(Path::new(".")).join(f);
                match std::fs::read_to_string(&full) {
                    Ok(s) => {
                        let b = s.as_bytes().to_vec();
                        (s, b)
                    }
                    Err(e) => {
                        errors.push(err(
                            "script_file".into(),
                            "script_file",
                            format!("cannot read {}: {e}", full.display()),
                        ));
                        (String::new(), Vec::new())
                    }
                }
            }
            _ => {
                errors.push(err(
                    "script".into(),
                    "script",
                    "give exactly one of `script` or `script_file`".into(),
                ));
                (String::new(), Vec::new())
            }
        };
        if !script.is_empty() {
            if let Err(e) = crate::script::compile(&script) {
                // Script positions are relative to the script; point at the `script` key too.
                let script_line = yaml::find_line(&text, "script");
                errors.push(LoadError {
                    file: path.to_path_buf(),
                    line: script_line,
                    column: None,
                    field: "script".into(),
                    message: format!("script does not compile: {e}"),
                });
            }
        }

        // Follow-ups: the shape here; the runbooks they name are checked by the catalog.
        let mut then = Vec::new();
        for (i, f) in raw.then.iter().enumerate() {
            let line = yaml::locate(&text, &format!("then[{i}]")).map(|l| l.0);
            let mut params = BTreeMap::new();
            let mut param_lines = BTreeMap::new();
            for (name, v) in &f.params {
                let field = format!("then[{i}].params.{name}");
                let pline =
                    yaml::refine_line(&text, yaml::locate(&text, &field).map(|l| l.0), name);
                match chain::parse_source(v) {
                    Ok(chain::ParamSource::Parent(p)) if !raw.params.contains_key(&p) => errors
                        .push(err(
                            field,
                            name,
                            format!(
                                "`{{{{ params.{p} }}}}`: runbook `{}` has no param `{p}`",
                                raw.name
                            ),
                        )),
                    Ok(s) => {
                        params.insert(name.clone(), s);
                    }
                    Err(m) => errors.push(err(field, name, m)),
                }
                param_lines.insert(name.clone(), pline);
            }
            then.push(chain::FollowUp {
                runbook: f.runbook.clone(),
                when: f.when,
                params,
                line,
                param_lines,
            });
        }

        if !errors.is_empty() {
            return Err(LoadErrors(errors));
        }

        // The version covers the YAML and the script bytes, so an edit to either is a new
        // version and needs a new approval.
        let mut version_input = text.as_bytes().to_vec();
        version_input.push(0);
        version_input.extend_from_slice(&script_bytes);
        let version = crate::audit::sha256_hex(&version_input);

        Ok(Runbook {
            name: raw.name,
            description: raw.description.unwrap_or_default(),
            owner: raw.owner,
            params: raw.params,
            targets: raw.targets,
            scope: Scope {
                commands,
                http,
                secrets: raw.scope.secrets,
            },
            allowed,
            approval,
            rollout,
            schedule: raw.schedule,
            emergency: raw.emergency,
            timeout,
            action_timeout,
            output,
            script,
            path: path.to_path_buf(),
            version,
            then,
            report: raw.report,
        })
    }
}

/// The default wall-clock limit of a whole run.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);

/// The smallest output limit accepted: below it even a marker line would not fit.
const MIN_OUTPUT_LIMIT: u64 = 1024;

/// Parses an output size: a byte count, or a number with `KiB`, `MiB` or `GiB` (`KB`, `MB`,
/// `GB`, `K`, `M`, `G` mean the same binary units), at least 1 KiB.
pub fn parse_size(v: &serde_yaml::Value) -> Result<u64, String> {
    let text = match v {
        serde_yaml::Value::Number(n) => n.to_string(),
        serde_yaml::Value::String(s) => s.trim().to_string(),
        _ => return Err("a size is a byte count or a number with KiB, MiB or GiB".into()),
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let unit_bytes: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => {
            return Err(format!(
                "`{text}` is not a size like 1048576, 512KiB, 16MiB or 1GiB"
            ))
        }
    };
    let n = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_bytes))
        .ok_or_else(|| format!("`{text}` is not a size like 1048576, 512KiB, 16MiB or 1GiB"))?;
    if n < MIN_OUTPUT_LIMIT {
        return Err(format!("`{text}` is below the smallest limit, 1KiB"));
    }
    Ok(n)
}

/// Parses `90s`, `10m`, `4h`, `1h 30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration like 30s, 10m, 4h: {e}"))
}

fn parse_opt_amount(
    v: &Option<serde_yaml::Value>,
    field: &str,
    errors: &mut Vec<LoadError>,
    path: &Path,
    text: &str,
) -> Option<Amount> {
    let v = v.as_ref()?;
    match Amount::parse(v) {
        Ok(a) => Some(a),
        Err(m) => {
            errors.push(yaml::error_at(path, text, field, m));
            None
        }
    }
}

/// YAML scalar/sequence/map → JSON, for params and defaults.
pub fn yaml_to_json(v: &serde_yaml::Value) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}
