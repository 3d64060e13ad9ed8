//! Chained runs (`then:`): the follow-ups a runbook declares, their parameter templates,
//! and the checks that need the whole catalog (the runbook exists, its params fit, no
//! cycle). Pure: the orchestrator (`run::chain`) starts the follow-ups.
//!
//! A follow-up's param value is a literal, or a template that is the whole value:
//! `{{ emit.KEY }}` (a value the parent's script published with `emit(KEY, value)`) or
//! `{{ params.NAME }}` (the parent's own resolved param). There is no expression language
//! and no interpolation inside a longer string: a value is substituted whole, so its type
//! survives and nothing in it is ever parsed again.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{ParamType, Runbook};
use crate::error::LoadError;

/// How deep a chain may go at run time: a run started by a follow-up of a follow-up ... of
/// a root run is at depth N; a follow-up that would be deeper is refused and audited.
/// Cycles are already load errors; this guards against what a load check cannot see (a
/// chain grown across a reload, a very long straight chain).
pub const MAX_CHAIN_DEPTH: usize = 5;

/// Bounds on what a script may publish with `emit()`.
pub mod emit_limits {
    /// Bytes of a key (`[A-Za-z_][A-Za-z0-9_]*`).
    pub const MAX_KEY: usize = 64;
    /// Bytes of a value (its text form).
    pub const MAX_VALUE: usize = 4096;
    /// Distinct keys one run may publish.
    pub const MAX_KEYS: usize = 32;
}

/// When a follow-up starts, by the parent's final status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChainWhen {
    /// The parent succeeded (the default).
    #[default]
    Succeeded,
    /// The parent failed (a script failure, a scope violation, a timeout, a frozen host).
    Failed,
    /// The parent succeeded or failed. A run that was cancelled, denied, expired or
    /// interrupted was stopped by a person or a crash and starts no follow-up.
    Always,
}

/// The parent's end, as far as follow-ups care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParentEnd {
    Succeeded,
    Failed,
    /// Cancelled, denied, expired, interrupted: no follow-up starts.
    Stopped,
}

impl ChainWhen {
    /// Whether a follow-up with this `when` starts after a parent that ended so.
    pub fn fires(self, end: ParentEnd) -> bool {
        matches!(
            (self, end),
            (ChainWhen::Succeeded, ParentEnd::Succeeded)
                | (ChainWhen::Failed, ParentEnd::Failed)
                | (ChainWhen::Always, ParentEnd::Succeeded | ParentEnd::Failed)
        )
    }
}

/// `then:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFollowUp {
    pub runbook: String,
    #[serde(default)]
    pub when: ChainWhen,
    #[serde(default)]
    pub params: BTreeMap<String, serde_yaml::Value>,
}

/// Where a follow-up's param value comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamSource {
    /// A value written in the runbook.
    Literal(Value),
    /// `{{ emit.KEY }}`.
    Emit(String),
    /// `{{ params.NAME }}`.
    #[serde(rename = "params")]
    Parent(String),
}

/// A validated follow-up.
#[derive(Debug, Clone, Serialize)]
pub struct FollowUp {
    pub runbook: String,
    pub when: ChainWhen,
    pub params: BTreeMap<String, ParamSource>,
    /// Where `then[i]` is in its file, for errors found across the catalog.
    #[serde(skip)]
    pub line: Option<usize>,
    /// Where each param is, likewise.
    #[serde(skip)]
    pub param_lines: BTreeMap<String, Option<usize>>,
}

/// Whether `s` is a valid emit key or param name in a template.
pub fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Reads one param value of a follow-up: a whole-value template, or a literal. A string
/// holding `{{` anywhere else is an error, so a half-written template never passes as text.
pub fn parse_source(v: &serde_yaml::Value) -> Result<ParamSource, String> {
    const SHAPE: &str =
        "a template is the whole value, `{{ emit.KEY }}` or `{{ params.NAME }}` (no other text)";
    match v {
        serde_yaml::Value::String(s) if s.contains("{{") || s.contains("}}") => {
            let inner = s
                .trim()
                .strip_prefix("{{")
                .and_then(|r| r.strip_suffix("}}"))
                .map(str::trim)
                .ok_or_else(|| format!("`{s}`: {SHAPE}"))?;
            let (kind, name) = inner
                .split_once('.')
                .ok_or_else(|| format!("`{s}`: {SHAPE}"))?;
            if !is_ident(name) || name.len() > emit_limits::MAX_KEY {
                return Err(format!(
                    "`{s}`: `{name}` is not a name (letters, digits, `_`)"
                ));
            }
            match kind {
                "emit" => Ok(ParamSource::Emit(name.to_string())),
                "params" => Ok(ParamSource::Parent(name.to_string())),
                other => Err(format!("`{s}`: unknown source `{other}`; {SHAPE}")),
            }
        }
        serde_yaml::Value::Mapping(_) | serde_yaml::Value::Tagged(_) => {
            Err("a follow-up param is a plain value, a list, or a template".into())
        }
        other => Ok(ParamSource::Literal(super::yaml_to_json(other))),
    }
}

fn type_word(t: ParamType) -> &'static str {
    match t {
        ParamType::String => "string",
        ParamType::Int => "int",
        ParamType::Bool => "bool",
        ParamType::List => "list",
    }
}

/// Whether a parent param of type `from` always fits a child param of type `to`.
fn fits(from: ParamType, to: ParamType) -> bool {
    from == to || (from == ParamType::Int && to == ParamType::String)
}

/// The checks of `then:` that need the whole catalog: each follow-up names a runbook that
/// exists, gives only params it declares, with values of their type where the type is
/// known at load (literals, the parent's params), and every required param; and no chain
/// of follow-ups comes back to where it started. `some_failed`: other runbook files did
/// not load, so a runbook named here may be one of them.
pub fn check_catalog(runbooks: &BTreeMap<String, Runbook>, some_failed: bool) -> Vec<LoadError> {
    let mut errors = Vec::new();
    for rb in runbooks.values() {
        for (i, f) in rb.then.iter().enumerate() {
            let at = |field: String, line: Option<usize>, message: String| LoadError {
                file: rb.path.clone(),
                line,
                column: None,
                field,
                message,
            };
            let Some(child) = runbooks.get(&f.runbook) else {
                errors.push(at(
                    format!("then[{i}].runbook"),
                    f.line,
                    if some_failed {
                        format!(
                            "unknown runbook `{}` (or its file did not load: see the errors above)",
                            f.runbook
                        )
                    } else {
                        format!("unknown runbook `{}`", f.runbook)
                    },
                ));
                continue;
            };
            for (name, source) in &f.params {
                let field = format!("then[{i}].params.{name}");
                let line = f.param_lines.get(name).copied().flatten().or(f.line);
                let Some(spec) = child.params.get(name) else {
                    errors.push(at(
                        field,
                        line,
                        format!("runbook `{}` has no param `{name}`", child.name),
                    ));
                    continue;
                };
                match source {
                    ParamSource::Literal(v) => {
                        if let Err(m) = spec.kind.coerce(v) {
                            errors.push(at(field, line, m));
                        }
                    }
                    ParamSource::Parent(p) => match rb.params.get(p) {
                        None => errors.push(at(
                            field,
                            line,
                            format!("runbook `{}` has no param `{p}`", rb.name),
                        )),
                        Some(from) if !fits(from.kind, spec.kind) => errors.push(at(
                            field,
                            line,
                            format!(
                                "`params.{p}` is {} but `{}`'s `{name}` is {}",
                                type_word(from.kind),
                                child.name,
                                type_word(spec.kind)
                            ),
                        )),
                        Some(_) => {}
                    },
                    // Known only at run time; checked then, before the child starts.
                    ParamSource::Emit(_) => {}
                }
            }
            for (name, spec) in &child.params {
                if spec.default.is_none() && !f.params.contains_key(name) {
                    errors.push(at(
                        format!("then[{i}].params"),
                        f.line,
                        format!(
                            "runbook `{}` needs param `{name}` (it has no default)",
                            child.name
                        ),
                    ));
                }
            }
        }
    }
    errors.extend(cycles(runbooks));
    errors
}

/// Every cycle of follow-ups, each reported once, at the `then` entry that closes it.
fn cycles(runbooks: &BTreeMap<String, Runbook>) -> Vec<LoadError> {
    // Depth-first search with colours; an edge to a runbook on the current path closes a
    // cycle. Iterative, so a long chain cannot overflow the stack.
    #[derive(Clone, Copy, PartialEq)]
    enum Colour {
        OnPath,
        Done,
    }
    let mut colour: BTreeMap<&str, Colour> = BTreeMap::new();
    let mut errors = Vec::new();
    let mut reported: BTreeSet<Vec<String>> = BTreeSet::new();
    for root in runbooks.keys() {
        if colour.contains_key(root.as_str()) {
            continue;
        }
        // (runbook, index of the next follow-up to follow)
        let mut stack: Vec<(&str, usize)> = vec![(root.as_str(), 0)];
        colour.insert(root.as_str(), Colour::OnPath);
        while let Some((name, next)) = stack.last().copied() {
            let Some(rb) = runbooks.get(name) else {
                stack.pop();
                continue;
            };
            let Some(f) = rb.then.get(next) else {
                colour.insert(name, Colour::Done);
                stack.pop();
                continue;
            };
            if let Some(top) = stack.last_mut() {
                top.1 += 1;
            }
            let child = f.runbook.as_str();
            if !runbooks.contains_key(child) {
                continue;
            }
            match colour.get(child) {
                Some(Colour::OnPath) => {
                    let start = stack.iter().position(|(n, _)| *n == child).unwrap_or(0);
                    let mut path: Vec<String> =
                        stack[start..].iter().map(|(n, _)| n.to_string()).collect();
                    // One report per cycle, whichever runbook the search entered it by.
                    let mut key = path.clone();
                    key.sort();
                    path.push(child.to_string());
                    if reported.insert(key) {
                        errors.push(LoadError {
                            file: rb.path.clone(),
                            line: f.line,
                            column: None,
                            field: format!("then[{}].runbook", next),
                            message: format!(
                                "follow-ups form a cycle: {}; a chain must end",
                                path.join(" → ")
                            ),
                        });
                    }
                }
                Some(Colour::Done) => {}
                None => {
                    colour.insert(child, Colour::OnPath);
                    stack.push((child, 0));
                }
            }
        }
    }
    errors
}

/// Checks one `emit(key, value)` against [`emit_limits`]: the key is a name, the value a
/// string, integer or boolean of bounded size. `Err` is the script's error message.
pub fn check_emit(key: &str, value: &Value) -> Result<(), String> {
    if !is_ident(key) || key.len() > emit_limits::MAX_KEY {
        return Err(format!(
            "emit(): key `{}` is not a name of letters, digits and `_` of at most {} bytes",
            key.chars().take(80).collect::<String>(),
            emit_limits::MAX_KEY
        ));
    }
    let size = match value {
        Value::String(s) => s.len(),
        Value::Number(n) if n.is_i64() => 0,
        Value::Bool(_) => 0,
        _ => {
            return Err(format!(
                "emit(): `{key}` must be a string, an integer or a boolean"
            ))
        }
    };
    if size > emit_limits::MAX_VALUE {
        return Err(format!(
            "emit(): the value of `{key}` is {size} bytes, over the limit of {}",
            emit_limits::MAX_VALUE
        ));
    }
    Ok(())
}

/// Where an emitted key stands after every host of the parent has run.
#[derive(Debug, Clone, PartialEq)]
pub enum Emitted {
    /// One value (every host that emitted the key emitted this value).
    Value(Value),
    /// The value held a secret: it was not kept and cannot be passed on.
    Withheld,
    /// Hosts emitted different values: which one a follow-up should get is unknowable.
    Conflict(Vec<String>),
}

/// The params of a follow-up, its templates filled from the parent's params and what the
/// parent emitted. `Err` says why the follow-up cannot start; the child's own param checks
/// (types, unknown names) follow when its plan is made.
pub fn child_params(
    f: &FollowUp,
    parent_params: &Map<String, Value>,
    emitted: &BTreeMap<String, Emitted>,
) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (name, source) in &f.params {
        let v = match source {
            ParamSource::Literal(v) => v.clone(),
            ParamSource::Parent(p) => parent_params
                .get(p)
                .cloned()
                .ok_or_else(|| format!("param `{name}`: the parent has no param `{p}`"))?,
            ParamSource::Emit(k) => match emitted.get(k) {
                Some(Emitted::Value(v)) => v.clone(),
                Some(Emitted::Withheld) => {
                    return Err(format!(
                        "param `{name}`: emit `{k}` was withheld because its value held a secret"
                    ))
                }
                Some(Emitted::Conflict(hosts)) => {
                    return Err(format!(
                        "param `{name}`: hosts {} emitted different values for `{k}`",
                        hosts.join(", ")
                    ))
                }
                None => {
                    return Err(format!(
                        "param `{name}`: the parent's script did not emit `{k}`"
                    ))
                }
            },
        };
        out.insert(name.clone(), v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn y(s: &str) -> serde_yaml::Value {
        serde_yaml::from_str(s).unwrap()
    }

    #[test]
    fn templates_are_whole_values() {
        assert_eq!(
            parse_source(&y("'{{ emit.host }}'")),
            Ok(ParamSource::Emit("host".into()))
        );
        assert_eq!(
            parse_source(&y("'{{params.case}}'")),
            Ok(ParamSource::Parent("case".into()))
        );
        assert_eq!(
            parse_source(&y("42")),
            Ok(ParamSource::Literal(Value::from(42)))
        );
        for bad in [
            "'host {{ emit.host }}'",
            "'{{ emit.host }} x'",
            "'{{ env.HOME }}'",
            "'{{ emit.a.b }}'",
            "'{{ emit }}'",
            "'{{ emit.h-x }}'",
            "'}}'",
            "{a: 1}",
        ] {
            assert!(parse_source(&y(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn emit_is_bounded() {
        assert!(check_emit("host", &Value::from("web1")).is_ok());
        assert!(check_emit("n", &Value::from(3)).is_ok());
        assert!(check_emit("ok", &Value::from(true)).is_ok());
        assert!(check_emit("bad key", &Value::from("x")).is_err());
        assert!(check_emit("", &Value::from("x")).is_err());
        assert!(check_emit(&"k".repeat(65), &Value::from("x")).is_err());
        assert!(check_emit("big", &Value::from("x".repeat(4097))).is_err());
        assert!(check_emit("list", &serde_json::json!(["a"])).is_err());
        assert!(check_emit("f", &serde_json::json!(1.5)).is_err());
    }

    #[test]
    fn when_fires_on_the_matching_end_only() {
        use ChainWhen::*;
        let table = [
            (Succeeded, ParentEnd::Succeeded, true),
            (Succeeded, ParentEnd::Failed, false),
            (Succeeded, ParentEnd::Stopped, false),
            (Failed, ParentEnd::Succeeded, false),
            (Failed, ParentEnd::Failed, true),
            (Failed, ParentEnd::Stopped, false),
            (Always, ParentEnd::Succeeded, true),
            (Always, ParentEnd::Failed, true),
            (Always, ParentEnd::Stopped, false),
        ];
        for (when, end, fires) in table {
            assert_eq!(when.fires(end), fires, "{when:?} {end:?}");
        }
    }

    #[test]
    fn child_params_refuse_withheld_conflicting_and_missing_emits() {
        let f = FollowUp {
            runbook: "b".into(),
            when: ChainWhen::Succeeded,
            params: BTreeMap::from([
                ("device".into(), ParamSource::Emit("host".into())),
                ("case".into(), ParamSource::Parent("case".into())),
                ("n".into(), ParamSource::Literal(Value::from(3))),
            ]),
            line: None,
            param_lines: BTreeMap::new(),
        };
        let parent: Map<String, Value> = serde_json::from_str(r#"{"case": "INC-1"}"#).unwrap();
        let ok = BTreeMap::from([("host".into(), Emitted::Value(Value::from("web1")))]);
        let p = child_params(&f, &parent, &ok).unwrap();
        assert_eq!(p["device"], "web1");
        assert_eq!(p["case"], "INC-1");
        assert_eq!(p["n"], 3);
        let withheld = BTreeMap::from([("host".into(), Emitted::Withheld)]);
        assert!(child_params(&f, &parent, &withheld)
            .unwrap_err()
            .contains("withheld"));
        let conflict = BTreeMap::from([(
            "host".into(),
            Emitted::Conflict(vec!["a".into(), "b".into()]),
        )]);
        assert!(child_params(&f, &parent, &conflict)
            .unwrap_err()
            .contains("different values"));
        assert!(child_params(&f, &parent, &BTreeMap::new())
            .unwrap_err()
            .contains("did not emit"));
    }
}
