//! Offline commands: `validate`, `plan`, `audit verify|export`, `token new`.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::audit::anchor::{parse_checkpoints, verify_anchored, AnchorError, AuditKey, PublicKey};
use crate::audit::{self, Broken};
use crate::config::{Config, Role};
use crate::error::{Error, LoadErrors, Result};
use crate::runbook::plan::{make_limited_plan, Initiator};
use crate::runbook::Catalog;
use crate::store::Store;

/// Loads the config and the runbooks (all of `runbooks_dir`, or `paths`).
pub fn load(config: &Path, paths: &[PathBuf]) -> Result<(Config, Catalog)> {
    let config = Config::load(config)?;
    let catalog = if paths.is_empty() {
        let catalog = Catalog::load_dir(&config.runbooks_dir, &config)?;
        // Triggers name runbooks and their params: checked when the whole catalog is known.
        let problems = crate::trigger::check_catalog(&config.triggers, &catalog);
        if !problems.is_empty() {
            let text = std::fs::read_to_string(&config.path).unwrap_or_default();
            let errors = problems
                .into_iter()
                .map(|(field, needle, message)| {
                    let mut e = crate::yaml::error_at(&config.path, &text, &field, message);
                    e.line = crate::yaml::refine_line(&text, e.line, &needle);
                    e
                })
                .collect();
            return Err(LoadErrors(errors).into());
        }
        catalog
    } else {
        Catalog::load_files(paths, &config)?
    };
    Ok((config, catalog))
}

pub fn validate(config: &Path, paths: &[PathBuf]) -> Result<()> {
    let (_, catalog) = load(config, paths)?;
    // Valid but likely not what was meant (both crontab day fields restricted): a warning on
    // stderr, located like a load error, and still exit 0.
    for rb in catalog.runbooks.values() {
        let Some(spec) = &rb.schedule else { continue };
        let Ok(sch) = crate::scheduler::Schedule::parse(spec) else {
            continue;
        };
        let warnings = sch.warnings();
        if warnings.is_empty() {
            continue;
        }
        let text = std::fs::read_to_string(&rb.path).unwrap_or_default();
        for w in warnings {
            let at = crate::yaml::error_at(&rb.path, &text, "schedule.cron", w);
            errln!("warning: {at}");
        }
    }
    outln!("ok: {} runbooks", catalog.runbooks.len());
    Ok(())
}

pub fn plan(
    config_path: &Path,
    name: &str,
    params: &[String],
    as_user: Option<&str>,
    limit: &[String],
    list_targets: bool,
    json: bool,
) -> Result<()> {
    let (config, catalog) = load(config_path, &[])?;
    let rb = catalog
        .get(name)
        .ok_or_else(|| Error::Usage(format!("unknown runbook `{name}`")))?;
    let initiator = match as_user {
        Some(u) => {
            let user = config
                .user(u)
                .ok_or_else(|| Error::Usage(format!("unknown user `{u}`")))?;
            if let Err(d) = crate::policy::may_start(rb, user) {
                errln!("note: {d}");
            }
            Initiator {
                user: user.name.clone(),
                party: user.party.clone(),
            }
        }
        None => config
            .users
            .iter()
            .find(|u| u.party == rb.owner && u.has_role(Role::Operator))
            .map(|u| Initiator {
                user: u.name.clone(),
                party: u.party.clone(),
            })
            .unwrap_or(Initiator {
                user: "system".into(),
                party: rb.owner.clone(),
            }),
    };
    let params = super::parse_params(params)?;
    let plan = make_limited_plan(rb, &config, &params, initiator, None, limit)
        .map_err(|e| Error::Usage(e.to_string()))?;
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&plan).unwrap_or_default()
        );
        return Ok(());
    }
    let mut out = String::new();
    out.push_str(&format!(
        "runbook:   {} (version {})\n",
        plan.runbook,
        &plan.version[..12]
    ));
    out.push_str(&format!(
        "initiator: {} ({})\n",
        plan.initiator.user, plan.initiator.party
    ));
    out.push_str("params:\n");
    for (k, v) in &plan.params {
        out.push_str(&format!("  {k} = {v}\n"));
    }
    if plan.targets.is_empty() {
        out.push_str("targets:   none (the script runs once)\n");
    } else if list_targets {
        out.push_str("targets:\n");
        for t in &plan.targets {
            let at = match t.transport {
                crate::config::Transport::Local => "local".to_string(),
                crate::config::Transport::Ssh => format!("{}@{}:{}", t.user, t.address, t.port),
            };
            out.push_str(&format!(
                "  {} {} owner={} {}\n",
                t.name,
                at,
                t.owner,
                t.host_key.as_deref().unwrap_or("")
            ));
        }
    } else {
        let total = plan.targets.len();
        let counts: Vec<String> = plan
            .target_owner_counts()
            .into_iter()
            .map(|(p, n)| format!("{p} {}", crate::policy::matrix::owns_of(n, total)))
            .collect();
        out.push_str(&format!(
            "targets:   {} (--targets lists them)\n",
            counts.join(", ")
        ));
    }
    if !plan.limit.is_empty() {
        out.push_str(&format!("limit:     {}\n", plan.limit.join(",")));
    }
    out.push_str(&format!("scope:     {}\n", plan.scope));
    out.push_str(&format!("owners:    {}\n", plan.owners.join(", ")));
    if plan.approvals.is_empty() {
        out.push_str("approval:  not needed\n");
    }
    for a in &plan.approvals {
        let reasons = if list_targets {
            a.reasons.clone()
        } else {
            plan.reasons_summary(a)
        };
        out.push_str(&format!(
            "approval:  {} x{} ({})\n",
            a.party,
            a.quorum,
            reasons.join("; ")
        ));
    }
    out.push_str(&format!("digest:    {}\n", plan.digest));
    // Each follow-up is a run of its own with its own plan and approvals, planned when
    // this one ends; listed here so nobody is surprised by it.
    for f in &rb.then {
        let when = serde_json::to_value(f.when).unwrap_or_default();
        out.push_str(&format!(
            "then:      {} (when {}; its own plan and approvals)\n",
            f.runbook,
            when.as_str().unwrap_or("?")
        ));
    }
    out!("{out}");
    Ok(())
}

pub fn audit_verify(
    config: &Path,
    file: Option<&Path>,
    checkpoint_files: &[PathBuf],
    key: Option<&str>,
) -> Result<()> {
    let text;
    let store;
    let entries: Box<dyn Iterator<Item = std::result::Result<audit::Entry, Broken>>> = match file {
        Some(f) => {
            text = std::fs::read_to_string(f)
                .map_err(|e| Error::io(format!("cannot read {}", f.display()), e))?;
            Box::new(audit::parse_export(&text))
        }
        None => {
            store = open_store(config)?;
            Box::new(records(&store).map(|r| r.map(audit::Entry::Full)))
        }
    };
    let broken = |b: Broken| Error::AuditBroken {
        seq: b.seq,
        reason: b.reason,
    };
    let verified = if checkpoint_files.is_empty() {
        audit::verify_entries(entries).map_err(broken)?
    } else {
        let trusted: PublicKey = match key {
            Some(k) => k.parse().map_err(|e| Error::Usage(format!("--key: {e}")))?,
            None => {
                let config = Config::load(config)?;
                AuditKey::load(&config.state_dir)?.public()
            }
        };
        let mut checkpoints = Vec::new();
        for f in checkpoint_files {
            let text = std::fs::read_to_string(f)
                .map_err(|e| Error::io(format!("cannot read {}", f.display()), e))?;
            let mut cps = parse_checkpoints(&text)
                .map_err(|e| Error::Checkpoint(format!("{}: {e}", f.display())))?;
            checkpoints.append(&mut cps);
        }
        verify_anchored(entries, &checkpoints, &trusted).map_err(|e| match e {
            AnchorError::BadCheckpoint(m) => Error::Checkpoint(m),
            AnchorError::Broken(b) => broken(b),
        })?
    };
    let redacted = if verified.redacted > 0 {
        format!(" ({} redacted)", verified.redacted)
    } else {
        String::new()
    };
    outln!(
        "ok: {} records{redacted}, head {}",
        verified.count,
        verified.head
    );
    if verified.checkpoints > 0 {
        outln!(
            "extends {} checkpoint(s) signed by {}",
            verified.checkpoints,
            key.unwrap_or("the key in state_dir")
        );
    }
    Ok(())
}

/// `store migrate --to URL`: copies the SQLite state into an empty PostgreSQL database and
/// checks the copy (rows per table, the audit chain verified to the same head).
pub fn store_migrate(config: &Path, to: &str) -> Result<()> {
    let config = Config::load(config)?;
    let file = config.state_dir.join("tandem.db");
    if !file.exists() {
        return Err(Error::Usage(format!(
            "store migrate: no SQLite state at {}",
            file.display()
        )));
    }
    let from = Store::open(&config.state_dir)?;
    let target = Store::connect(to)?;
    let copied = from.copy_into(&target)?;
    for (table, rows) in &copied.tables {
        outln!("{table}: {rows} rows");
    }
    outln!(
        "ok: audit chain of {} records copied and verified, head {}",
        copied.audit_records,
        copied.audit_head
    );
    Ok(())
}

/// `audit key`: the public key that signs checkpoints, made on first use.
pub fn audit_key(config: &Path, json: bool) -> Result<()> {
    let config = Config::load(config)?;
    let key = AuditKey::load_or_create(&config.state_dir)?;
    if json {
        outln!("{}", json!({"key": key.public().to_string()}));
    } else {
        outln!("{}", key.public());
    }
    Ok(())
}

/// `audit checkpoint`: signs one over the store's head now and prints it as one JSON line.
pub fn audit_checkpoint(config: &Path) -> Result<()> {
    let config = Config::load(config)?;
    let store = Store::for_config(&config)?;
    let key = AuditKey::load_or_create(&config.state_dir)?;
    let cp = crate::witness::sign_checkpoint(&store, &key, crate::witness::Trigger::Command)?;
    outln!("{}", serde_json::to_string(&cp).unwrap_or_default());
    Ok(())
}

pub fn audit_export(config: &Path) -> Result<()> {
    let store = open_store(config)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for r in records(&store) {
        let r = r.map_err(|b| Error::AuditBroken {
            seq: b.seq,
            reason: b.reason,
        })?;
        let line = serde_json::to_string(&r).unwrap_or_default();
        writeln!(out, "{line}").map_err(|e| Error::io("writing the export", e))?;
    }
    out.flush().map_err(|e| Error::io("writing the export", e))
}

/// `tandem report`: reads the store like `audit verify` does, and writes the report.
pub fn report(
    config_path: &Path,
    from: &str,
    to: &str,
    party: Option<&str>,
    format: crate::report::render::Format,
    out: Option<&Path>,
) -> Result<()> {
    let period =
        crate::report::Period::parse(from, to).map_err(|e| Error::Usage(format!("--{e}")))?;
    let (config, catalog) = load(config_path, &[])?;
    if let Some(p) = party {
        if !config.parties.iter().any(|x| x == p) {
            return Err(Error::Usage(format!(
                "--party: unknown party `{p}` (parties: {})",
                config.parties.join(", ")
            )));
        }
    }
    let store = Store::open(&config.state_dir)?;
    let scope = crate::run::reads::ReportScope {
        viewer: None,
        party,
    };
    let source = crate::run::reads::report_source(&store, &config, &catalog, &scope, period)?;
    let report = crate::report::compute(period, &source);
    let text = crate::report::render::render(&report, format);
    match out {
        Some(f) => std::fs::write(f, text)
            .map_err(|e| Error::io(format!("cannot write {}", f.display()), e)),
        None => {
            out!("{text}");
            Ok(())
        }
    }
}

fn open_store(config: &Path) -> Result<Store> {
    let config = Config::load(config).map_err(|e: LoadErrors| Error::Load(e))?;
    Ok(Store::for_config(&config)?)
}

/// The store's audit records in order, read a page at a time.
fn records(store: &Store) -> impl Iterator<Item = Result<audit::Record, Broken>> + '_ {
    let mut after = 0u64;
    let mut page: std::vec::IntoIter<audit::Record> = Vec::new().into_iter();
    let mut failed = false;
    std::iter::from_fn(move || loop {
        if failed {
            return None;
        }
        if let Some(r) = page.next() {
            after = r.seq;
            return Some(Ok(r));
        }
        match store.audit_records(after, 5000) {
            Ok(p) if p.is_empty() => return None,
            Ok(p) => page = p.into_iter(),
            Err(e) => {
                failed = true;
                return Some(Err(Broken {
                    seq: after + 1,
                    reason: format!("cannot read the log: {e}"),
                }));
            }
        }
    })
}

pub fn token_new(user: &str, json: bool) -> Result<()> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Usage(format!("no randomness available: {e}")))?;
    let token = format!("tdm_{}", hex::encode(bytes));
    let sha = audit::sha256_hex(token.as_bytes());
    if json {
        outln!(
            "{}",
            json!({"user": user, "token": token, "token_sha256": sha})
        );
    } else {
        outln!("token: {token}");
        outln!("token_sha256: {sha}");
        errln!("Give the token to {user} (it is shown only now); put the token_sha256 line in the user's entry in tandem.yaml.");
    }
    Ok(())
}

pub fn next(config: &Path, name: &str, from: Option<&str>, count: usize, json: bool) -> Result<()> {
    let (config, catalog) = load(config, &[])?;
    let rb = catalog
        .get(name)
        .ok_or_else(|| Error::Usage(format!("unknown runbook `{name}`")))?;
    let spec = rb
        .schedule
        .as_ref()
        .ok_or_else(|| Error::Usage(format!("runbook `{name}` has no schedule")))?;
    let sch = crate::scheduler::Schedule::parse(spec).map_err(Error::Usage)?;
    let from = match from {
        Some(f) => chrono::DateTime::parse_from_rfc3339(f)
            .map_err(|e| Error::Usage(format!("--from `{f}` is not RFC 3339: {e}")))?
            .with_timezone(&chrono::Utc),
        None => chrono::Utc::now(),
    };
    let slots = sch.next(from, count);
    let local = |t: &chrono::DateTime<chrono::Utc>| {
        t.with_timezone(&sch.tz)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
    };
    // A slot in a blackout calendar is shown with the calendar and its reason: it will be
    // skipped, and an operator wants to see that before the night, not in the audit log.
    let blackout = |t: &chrono::DateTime<chrono::Utc>| sch.blackout_at(&config.calendars, *t);
    if json {
        let list: Vec<_> = slots
            .iter()
            .map(|t| {
                json!({
                    "utc": crate::run::schedule::ts(*t),
                    "local": local(t),
                    "timezone": sch.tz.name(),
                    "blackout": blackout(t).map(|(c, why)| json!({"calendar": c, "reason": why})),
                })
            })
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&list).unwrap_or_default()
        );
        return Ok(());
    }
    for t in &slots {
        let skipped = match blackout(t) {
            Some((c, Some(why))) => format!("  skipped: {c} ({why})"),
            Some((c, None)) => format!("  skipped: {c}"),
            None => String::new(),
        };
        outln!(
            "{}  {} ({}){skipped}",
            crate::run::schedule::ts(*t),
            local(t),
            sch.tz.name()
        );
    }
    Ok(())
}

/// `tandem trigger test NAME --payload FILE`: offline, what the payload would start. The
/// signature is not checked and nothing is recorded or started; repeated alerts and the rate
/// limit depend on the daemon's recent history and are not judged here.
pub fn trigger_test(config_path: &Path, name: &str, payload: &Path, json: bool) -> Result<()> {
    let (config, catalog) = load(config_path, &[])?;
    let t = config
        .trigger(name)
        .ok_or_else(|| Error::Usage(format!("unknown trigger `{name}`")))?;
    let rb = catalog
        .get(&t.runbook)
        .ok_or_else(|| Error::Usage(format!("unknown runbook `{}`", t.runbook)))?;
    let text = std::fs::read(payload)
        .map_err(|e| Error::Usage(format!("cannot read {}: {e}", payload.display())))?;
    let body: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| Error::Usage(format!("{}: not JSON: {e}", payload.display())))?;
    let at = |field: &str| {
        if field.is_empty() {
            "the body".to_string()
        } else {
            format!("field {field}")
        }
    };
    let instances = crate::trigger::evaluate(t, &body)
        .map_err(|e| Error::Usage(format!("{}: {}", at(&e.field), e.message)))?;
    let initiator = Initiator {
        user: t.initiator(),
        party: t.party.clone(),
    };
    let mut runs = Vec::new();
    for inst in &instances {
        let plan = make_limited_plan(
            rb,
            &config,
            &inst.params,
            initiator.clone(),
            None,
            &inst.limit,
        )
        .map_err(|e| {
            let field = inst.field_of(&e);
            Error::Usage(format!("{}: {e}", at(&field)))
        })?;
        let break_glass = t.break_glass && rb.emergency && !plan.approvals.is_empty();
        runs.push(json!({
            "key": inst.key,
            "alert": inst.context,
            "params": plan.params,
            "limit": plan.limit,
            "targets": plan.targets.iter().map(|h| json!({"name": h.name, "owner": h.owner})).collect::<Vec<_>>(),
            "approvals": plan.approvals,
            "break_glass": break_glass,
            "digest": plan.digest,
        }));
    }
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({"trigger": t.name, "runbook": rb.name, "initiator": t.initiator(), "party": t.party, "runs": runs}))
                .unwrap_or_default()
        );
        return Ok(());
    }
    let mut out = format!(
        "trigger:   {} (party {}) starts runbook {} as {}\n",
        t.name,
        t.party,
        rb.name,
        t.initiator()
    );
    if runs.is_empty() {
        out.push_str("no alert matched: nothing would start\n");
    }
    let s = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    for (i, r) in runs.iter().enumerate() {
        out.push_str(&format!("run {} (dedup key {}):\n", i + 1, s(&r["key"])));
        let a = &r["alert"];
        out.push_str(&format!(
            "  alert:     {} ({}){}\n",
            s(&a["alertname"]),
            s(&a["status"]),
            a["ref"]
                .as_str()
                .map(|x| format!(" ref {x}"))
                .unwrap_or_default()
        ));
        if let Some(summary) = a["summary"].as_str() {
            out.push_str(&format!("  summary:   {summary}\n"));
        }
        out.push_str("  params:\n");
        for (k, v) in r["params"].as_object().into_iter().flatten() {
            out.push_str(&format!("    {k} = {v}\n"));
        }
        let targets: Vec<String> = r["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|h| format!("{} (owner {})", s(&h["name"]), s(&h["owner"])))
            .collect();
        out.push_str(&format!(
            "  targets:   {}\n",
            if targets.is_empty() {
                "(none: the script runs once)".to_string()
            } else {
                targets.join(", ")
            }
        ));
        let approvals: Vec<String> = r["approvals"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| format!("{} x{}", s(&a["party"]), s(&a["quorum"])))
            .collect();
        out.push_str(&format!(
            "  approval:  {}\n",
            if approvals.is_empty() {
                "not needed: starts at once".to_string()
            } else if r["break_glass"] == true {
                format!(
                    "break-glass (skips {}; opens a review)",
                    approvals.join(", ")
                )
            } else {
                format!("waits for {}", approvals.join(", "))
            }
        ));
        out.push_str(&format!("  digest:    {}\n", s(&r["digest"])));
    }
    out!("{out}");
    Ok(())
}
