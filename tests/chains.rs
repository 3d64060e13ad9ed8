//! Chained runs (`then:` follow-ups and `emit()`), on a real daemon with a real sshd: a
//! follow-up starts on its parent's end as `when` says, carries what the parent emitted,
//! is a run of its own (rule 1, its own approvals), never carries a secret, and a chain can
//! neither loop (a load error) nor grow past the depth limit (refused at run time).

use serde_json::{json, Value};

use crate::approvals::approve;
use crate::harness::{unindent, wait_for, Daemon, Env, HostSpec, Sshd, StandardConfig};
use crate::run_flow::{
    audit_events, audit_records, client, get_run, get_run_as, id_of, log_lines, run_to_end,
    start_run, wait_event, wait_final, wait_final_as, RUN_TIMEOUT,
};

/// The parent's follow-ups, once `count` of them were requested (they are requested just
/// after the parent's final status is recorded).
fn children(daemon: &Daemon, user: &str, parent: &str, count: usize) -> Vec<String> {
    wait_for(
        RUN_TIMEOUT,
        &format!("{count} follow-ups of run {parent}"),
        || {
            let run = get_run_as(daemon, user, parent);
            let ids: Vec<String> = run["children"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c.as_str().map(str::to_string))
                .collect();
            (ids.len() >= count).then_some(ids)
        },
    )
}

/// The runbook of each of `ids`, in order.
fn runbooks_of(daemon: &Daemon, ids: &[String]) -> Vec<String> {
    let mut names: Vec<String> = ids
        .iter()
        .map(|id| get_run(daemon, id)["runbook"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

fn log_text(daemon: &Daemon, id: &str) -> String {
    log_lines(daemon, id)
        .iter()
        .map(|l| l["line"].as_str().unwrap_or_default().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// web1 (internal) and db1 (provider), both served by `sshd`.
fn two_party_env(sshd: &Sshd, extra: &str) -> Env {
    let env = Env::new();
    env.write_config(
        &StandardConfig::new()
            .host(HostSpec::ssh("web1", "internal", sshd))
            .host(HostSpec::ssh("db1", "provider", sshd))
            .extra(extra)
            .to_yaml(),
    );
    env
}

#[test]
fn follow_ups_start_on_their_when_and_carry_what_the_parent_emitted() {
    let sshd = Sshd::start();
    let env = two_party_env(&sshd, "");
    env.write_runbook(
        "probe.yaml",
        &unindent(
            r#"
            name: probe
            owner: internal
            params:
              incident: { type: string }
              fail: { type: bool, default: false }
            targets: [web1]
            scope: { commands: ["echo *"] }
            timeout: 60s
            then:
              - runbook: on-ok
                when: succeeded
                params: { ticket: "{{ emit.ticket }}", incident: "{{ params.incident }}", count: 3 }
              - runbook: on-fail
                when: failed
                params: { incident: "{{ params.incident }}" }
              - runbook: on-any
                when: always
            script: |
              let out = sh_ok("echo INC-4711");
              out.trim();
              emit("ticket", out);
              if params.fail { fail("asked to fail"); }
            "#,
        ),
    );
    for (name, params, line) in [
        (
            "on-ok",
            "ticket: { type: string }\n  incident: { type: string }\n  count: { type: int }",
            "on-ok: ticket ${params.ticket} incident ${params.incident} count ${params.count + 1}",
        ),
        (
            "on-fail",
            "incident: { type: string }",
            "on-fail: incident ${params.incident}",
        ),
        ("on-any", "{}", "on-any ran"),
    ] {
        let params = if params == "{}" {
            "params: {}".to_string()
        } else {
            format!("params:\n  {params}")
        };
        env.write_runbook(
            &format!("{name}.yaml"),
            &format!(
                "name: {name}\nowner: internal\n{params}\ntargets: []\ntimeout: 60s\nscript: |\n  log(`{line}`);\n"
            ),
        );
    }
    // `plan` lists the follow-ups, each to be planned on its own.
    env.command()
        .args(["plan", "probe", "-p", "incident=C-0"])
        .run()
        .success()
        .stdout_contains("then:      on-ok (when succeeded; its own plan and approvals)")
        .stdout_contains("then:      on-fail (when failed;");
    let daemon = Daemon::start(&env);

    // Success: `succeeded` and `always` start; `failed` does not.
    let parent = run_to_end(&daemon, "alice", "probe", json!({"incident": "C-1"}));
    assert_eq!(parent["status"], "succeeded", "{parent:#}");
    let parent_id = id_of(&parent);
    let kids = children(&daemon, "alice", &parent_id, 2);
    assert_eq!(runbooks_of(&daemon, &kids), ["on-any", "on-ok"]);
    for kid in &kids {
        let run = wait_final(&daemon, kid, RUN_TIMEOUT);
        assert_eq!(run["status"], "succeeded", "{run:#}");
        assert_eq!(run["parent_run"], parent_id.as_str(), "{run:#}");
        // Requested as the parent's initiator: the person who started the chain.
        assert_eq!(
            run["initiator"],
            json!({"user": "alice", "party": "internal"})
        );
        if run["runbook"] == "on-ok" {
            // The emitted value and the parent's param, substituted whole; a literal kept
            // its type (count + 1 = 4).
            assert_eq!(
                run["plan"]["params"],
                json!({"ticket": "INC-4711", "incident": "C-1", "count": 3})
            );
            let log = log_text(&daemon, kid);
            assert!(
                log.contains("on-ok: ticket INC-4711 incident C-1 count 4"),
                "{log}"
            );
        }
    }
    // Linked in the audit log both ways.
    let started = audit_events(&daemon, Some(&parent_id), "chain_started");
    assert_eq!(started.len(), 2, "{started:#?}");
    for r in &started {
        assert_eq!(r["detail"]["parent"], parent_id.as_str());
        assert!(kids.contains(&r["detail"]["child"].as_str().unwrap().to_string()));
    }
    let emitted = audit_events(&daemon, Some(&parent_id), "emitted");
    assert_eq!(emitted[0]["detail"]["key"], "ticket");
    assert_eq!(emitted[0]["detail"]["value"], "INC-4711");
    for kid in &kids {
        let requested = audit_events(&daemon, Some(kid), "run_requested");
        assert_eq!(requested[0]["detail"]["parent_run"], parent_id.as_str());
        assert_eq!(requested[0]["detail"]["chain_depth"], 1);
    }
    // `tandem show` names both ends of the link.
    let shown = client(&env, &daemon, "alice", &["show", &parent_id]);
    shown.success();
    for kid in &kids {
        shown.stdout_contains(&format!("follow-up:  {kid}"));
    }
    client(&env, &daemon, "alice", &["show", &kids[0]])
        .success()
        .stdout_contains(&format!("parent run: {parent_id}"));

    // Failure: `failed` and `always` start; `succeeded` does not, and the parent's failure
    // is its own.
    let parent = run_to_end(
        &daemon,
        "alice",
        "probe",
        json!({"incident": "C-2", "fail": true}),
    );
    assert_eq!(parent["status"], "failed", "{parent:#}");
    let parent_id = id_of(&parent);
    let kids = children(&daemon, "alice", &parent_id, 2);
    assert_eq!(runbooks_of(&daemon, &kids), ["on-any", "on-fail"]);
    for kid in &kids {
        let run = wait_final(&daemon, kid, RUN_TIMEOUT);
        assert_eq!(run["status"], "succeeded", "{run:#}");
        if run["runbook"] == "on-fail" {
            assert!(log_text(&daemon, kid).contains("on-fail: incident C-2"));
        }
    }
    assert_eq!(get_run(&daemon, &parent_id)["status"], "failed");
}

#[test]
fn a_follow_up_is_a_run_of_its_own_with_its_own_rule_1_and_approvals() {
    let sshd = Sshd::start();
    let env = two_party_env(&sshd, "");
    env.write_runbook(
        "internal-step.yaml",
        &unindent(
            r#"
            name: internal-step
            owner: internal
            targets: [web1]
            scope: { commands: ["echo *"] }
            timeout: 60s
            then:
              - runbook: provider-check
              - runbook: provider-only
              - runbook: typed
                params: { n: "{{ emit.host }}" }
            script: |
              sh_ok("echo step");
              emit("host", host.name);
            "#,
        ),
    );
    // On the provider's host: alice's follow-up needs the provider's approval, though the
    // parent needed none.
    env.write_runbook(
        "provider-check.yaml",
        &unindent(
            r#"
            name: provider-check
            owner: internal
            targets: [db1]
            scope: { commands: ["echo *"] }
            timeout: 60s
            script: |
              sh_ok("echo checked");
            "#,
        ),
    );
    // Only the provider may start it: rule 1 refuses alice's follow-up.
    env.write_runbook(
        "provider-only.yaml",
        &unindent(
            r#"
            name: provider-only
            owner: provider
            targets: []
            allowed: { parties: [provider] }
            timeout: 60s
            script: |
              log("should not run");
            "#,
        ),
    );
    // Takes an int: the emitted host name does not fit, found only after substitution.
    env.write_runbook(
        "typed.yaml",
        "name: typed\nowner: internal\nparams:\n  n: { type: int }\ntargets: []\nscript: |\n  log(\"typed\");\n",
    );
    let daemon = Daemon::start(&env);

    let parent = run_to_end(&daemon, "alice", "internal-step", json!({}));
    assert_eq!(parent["status"], "succeeded", "{parent:#}");
    let parent_id = id_of(&parent);
    let refusals = wait_for(RUN_TIMEOUT, "two chain_refused records", || {
        let r = audit_events(&daemon, Some(&parent_id), "chain_refused");
        (r.len() == 2).then_some(r)
    });
    let reason_for = |runbook: &str| {
        refusals
            .iter()
            .find(|r| r["detail"]["runbook"] == runbook)
            .and_then(|r| r["detail"]["reason"].as_str())
            .unwrap_or_else(|| panic!("no chain_refused for {runbook}: {refusals:#?}"))
            .to_string()
    };
    let reason = reason_for("provider-only");
    assert!(
        reason.contains("may be started by parties [provider]"),
        "{reason}"
    );
    let reason = reason_for("typed");
    assert!(reason.contains("`web1` is not an integer"), "{reason}");
    // The refusal does not touch the parent's outcome.
    assert_eq!(get_run(&daemon, &parent_id)["status"], "succeeded");

    let kids = children(&daemon, "alice", &parent_id, 1);
    assert_eq!(kids.len(), 1, "only provider-check started: {kids:?}");
    let child = wait_for(RUN_TIMEOUT, "the follow-up to await approval", || {
        let run = get_run(&daemon, &kids[0]);
        (run["status"] == "awaiting_approval").then_some(run)
    });
    assert_eq!(child["runbook"], "provider-check");
    assert_eq!(child["break_glass"], false);
    let parties: Vec<&str> = child["plan"]["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["party"].as_str().unwrap())
        .collect();
    assert_eq!(parties, ["provider"], "{child:#}");
    // The provider's approver sees it as a run to decide, linked to a parent it may not
    // see (the parent touched only internal hosts): the link is cut for it (rule 10).
    let as_pete = get_run_as(&daemon, "pete", &kids[0]);
    assert_eq!(as_pete["parent_run"], Value::Null, "{as_pete:#}");
    let (status, _) = daemon.get(
        &format!("/api/v1/runs/{parent_id}"),
        &crate::harness::token("pete"),
    );
    assert_eq!(status, 404);
    // Cut the same in the approvals list and in the decision's answer.
    let (status, pending) = daemon.get("/api/v1/approvals", &crate::harness::token("pete"));
    assert_eq!(status, 200, "{pending}");
    assert!(pending.to_string().contains(kids[0].as_str()), "{pending}");
    assert!(
        !pending.to_string().contains(parent_id.as_str()),
        "{pending}"
    );
    let (status, body) = approve(&daemon, "pete", &kids[0]);
    assert_eq!(status, 200, "{body}");
    assert!(!body.to_string().contains(parent_id.as_str()), "{body}");
    let child = wait_final_as(&daemon, "alice", &kids[0], RUN_TIMEOUT);
    assert_eq!(child["status"], "succeeded", "{child:#}");
    assert_eq!(child["parent_run"], parent_id.as_str());
    // The log stream's closing `end` event is the run as its follower may see it: cut too.
    let stream = reqwest::blocking::Client::new()
        .get(format!(
            "{}/api/v1/runs/{}/log?follow=1",
            daemon.url(),
            kids[0]
        ))
        .bearer_auth(crate::harness::token("pete"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let end = stream
        .split("\n\n")
        .find_map(|e| e.strip_prefix("event: end\ndata: "))
        .unwrap_or_else(|| panic!("no end event in {stream}"));
    let end: Value = serde_json::from_str(end).unwrap();
    assert_eq!(end["status"], "succeeded", "{end:#}");
    assert_eq!(end["parent_run"], Value::Null, "{end:#}");
    assert!(!stream.contains(parent_id.as_str()), "{stream}");
}

#[test]
fn a_secret_emitted_is_withheld_and_never_reaches_a_follow_up() {
    const SECRET: &str = "chain-s3cret-7f1e9a2b";
    let sshd = Sshd::start();
    let env = two_party_env(
        &sshd,
        "secrets:\n  api_token: { env: CHAIN_TEST_TOKEN, owner: internal }\n",
    );
    env.write_runbook(
        "leaky.yaml",
        &unindent(
            r#"
            name: leaky
            owner: internal
            targets: [web1]
            scope: { commands: ["echo *"], secrets: [api_token] }
            timeout: 60s
            then:
              - runbook: receiver
                params: { token: "{{ emit.token }}" }
            script: |
              let t = secret("api_token");
              emit("token", `Bearer ${t}`);
              log("emitted");
            "#,
        ),
    );
    env.write_runbook(
        "receiver.yaml",
        &unindent(
            r#"
            name: receiver
            owner: internal
            params:
              token: { type: string }
            targets: []
            timeout: 60s
            script: |
              log(`got ${params.token}`);
            "#,
        ),
    );
    let daemon = Daemon::start_with(&env, &[("CHAIN_TEST_TOKEN", SECRET)]);

    let parent = run_to_end(&daemon, "alice", "leaky", json!({}));
    // Withholding is not a failure of the parent: the secret just goes no further.
    assert_eq!(parent["status"], "succeeded", "{parent:#}");
    let parent_id = id_of(&parent);
    let refused = wait_event(&daemon, &parent_id, "chain_refused");
    let reason = refused["detail"]["reason"].as_str().unwrap();
    assert!(reason.contains("withheld"), "{reason}");
    let withheld = audit_events(&daemon, Some(&parent_id), "emit_withheld");
    assert_eq!(withheld[0]["detail"]["key"], "token");
    assert!(audit_events(&daemon, Some(&parent_id), "emitted").is_empty());
    let parent = get_run(&daemon, &parent_id);
    assert_eq!(parent["children"], json!([]));
    let log = log_text(&daemon, &parent_id);
    assert!(log.contains("emit `token` withheld"), "{log}");
    // Nowhere: not in the audit log, the run, its log, nor any run's params.
    let audit = serde_json::to_string(&audit_records(&daemon)).unwrap();
    assert!(!audit.contains(SECRET), "the audit log shows the secret");
    assert!(!parent.to_string().contains(SECRET));
    assert!(!log.contains(SECRET));
    let (_, runs) = daemon.get("/api/v1/runs", &crate::harness::token("alice"));
    assert!(!runs.to_string().contains(SECRET));
    assert!(runs
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["runbook"] != "receiver"));
}

#[test]
fn a_chain_past_the_depth_limit_is_refused_and_audited() {
    let env = Env::new();
    env.write_config(&StandardConfig::new().to_yaml());
    // c0 → c1 → … → c7: no cycle, but longer than the limit of 5 follow-ups.
    for i in 0..8 {
        let then = if i < 7 {
            format!("then:\n  - runbook: c{}\n", i + 1)
        } else {
            String::new()
        };
        env.write_runbook(
            &format!("c{i}.yaml"),
            &format!(
                "name: c{i}\nowner: internal\ntargets: []\ntimeout: 60s\n{then}script: |\n  log(\"link {i}\");\n"
            ),
        );
    }
    let daemon = Daemon::start(&env);
    let root = start_run(&daemon, "alice", "c0", json!({}));
    // Walk the chain down to the run where it was stopped.
    let mut id = id_of(&root);
    let mut depth = 0;
    loop {
        let run = wait_final(&daemon, &id, RUN_TIMEOUT);
        assert_eq!(run["status"], "succeeded", "{run:#}");
        assert_eq!(run["runbook"], format!("c{depth}"));
        if depth == 5 {
            break;
        }
        id = children(&daemon, "alice", &id, 1)[0].clone();
        depth += 1;
    }
    let refused = wait_event(&daemon, &id, "chain_refused");
    assert_eq!(refused["detail"]["runbook"], "c6");
    assert_eq!(refused["detail"]["depth_limit"], 5);
    assert!(refused["detail"]["reason"]
        .as_str()
        .unwrap()
        .contains("depth limit"));
    assert_eq!(get_run(&daemon, &id)["children"], json!([]));
    let (_, runs) = daemon.get("/api/v1/runs", &crate::harness::token("alice"));
    assert_eq!(runs.as_array().unwrap().len(), 6, "{runs:#}");
}

/// Runs `tandem validate` and returns its stderr, asserting exit 2.
fn validate_errors(env: &Env) -> String {
    let out = env.command().arg("validate").run();
    out.status(2).stdout_lacks("ok:").output_lacks("panicked");
    out.dump()
}

#[test]
fn a_cycle_of_follow_ups_is_a_load_error_naming_it() {
    let env = Env::new();
    env.write_config(&StandardConfig::new().to_yaml());
    let rb = |name: &str, next: &str| {
        format!(
            "name: {name}\nowner: internal\ntargets: []\nthen:\n  - runbook: {next}\n    when: always\nscript: |\n  log(\"x\");\n"
        )
    };
    env.write_runbook("a.yaml", &rb("a", "b"));
    env.write_runbook("b.yaml", &rb("b", "c"));
    env.write_runbook("c.yaml", &rb("c", "a"));
    env.write_runbook("d.yaml", &rb("d", "d"));
    let errors = validate_errors(&env);
    assert!(
        errors.contains("follow-ups form a cycle: d → d"),
        "{errors}"
    );
    // Each cycle once, whichever runbook the search entered it by.
    assert_eq!(errors.matches("form a cycle").count(), 2, "{errors}");
    assert!(
        errors.contains("follow-ups form a cycle: a → b → c → a"),
        "{errors}"
    );
    assert!(errors.contains("c.yaml:5"), "{errors}");
    assert!(errors.contains("then[0].runbook"), "{errors}");
    // The daemon does not start on it either.
    let serve = env
        .command()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .timeout(RUN_TIMEOUT)
        .run();
    serve.status(2).stderr_contains("cycle");
}

#[test]
fn follow_up_mistakes_are_load_errors_with_file_and_line() {
    let env = Env::new();
    env.write_config(&StandardConfig::new().to_yaml());
    env.write_runbook(
        "child.yaml",
        &unindent(
            r#"
            name: child
            owner: internal
            params:
              n: { type: int }
              flag: { type: bool, default: false }
            targets: []
            script: |
              log("child");
            "#,
        ),
    );
    env.write_runbook(
        "parent.yaml",
        &unindent(
            r#"
            name: parent
            owner: internal
            params:
              label: { type: string, default: "x" }
            targets: []
            then:
              - runbook: nowhere
              - runbook: child
                params:
                  n: "{{ params.label }}"
                  colour: blue
              - runbook: child
                when: sometimes
            script: |
              log("parent");
            "#,
        ),
    );
    env.write_runbook(
        "caller.yaml",
        "name: caller\nowner: internal\ntargets: []\nthen:\n  - runbook: parent\nscript: |\n  log(\"c\");\n",
    );
    let errors = validate_errors(&env);
    assert!(errors.contains("then[2].when"), "{errors}");
    // A follow-up naming a runbook whose own file failed says it may be that.
    assert_reported(
        &errors,
        "caller.yaml",
        5,
        "then[0].runbook",
        "unknown runbook `parent` (or its file did not load",
    );
    // `when: sometimes` stops the file there; fixed, the checks across runbooks speak.
    env.write_runbook(
        "parent.yaml",
        &unindent(
            r#"
            name: parent
            owner: internal
            params:
              label: { type: string, default: "x" }
            targets: []
            then:
              - runbook: nowhere
              - runbook: child
                params:
                  n: "{{ params.label }}"
                  colour: blue
              - runbook: child
                params:
                  n: lots
              - runbook: child
            script: |
              log("parent");
            "#,
        ),
    );
    let errors = validate_errors(&env);
    for (line, field, message) in [
        (7, "then[0].runbook", "unknown runbook `nowhere`"),
        (
            10,
            "then[1].params.n",
            "`params.label` is string but `child`'s `n` is int",
        ),
        (
            11,
            "then[1].params.colour",
            "runbook `child` has no param `colour`",
        ),
        (14, "then[2].params.n", "`lots` is not an integer"),
        (15, "then[3].params", "needs param `n`"),
    ] {
        assert_reported(&errors, "parent.yaml", line, field, message);
    }
    // Templates are checked in the file itself: a whole value, a known source and name.
    env.write_runbook(
        "parent.yaml",
        &unindent(
            r#"
            name: parent
            owner: internal
            targets: []
            then:
              - runbook: child
                params:
                  n: "ticket {{ emit.n }}"
              - runbook: child
                params:
                  n: "{{ params.nope }}"
              - runbook: child
                params:
                  n: "{{ env.HOME }}"
            script: |
              log("parent");
            "#,
        ),
    );
    let errors = validate_errors(&env);
    for (line, field, message) in [
        (7, "then[0].params.n", "a template is the whole value"),
        (
            10,
            "then[1].params.n",
            "runbook `parent` has no param `nope`",
        ),
        (13, "then[2].params.n", "unknown source `env`"),
    ] {
        assert_reported(&errors, "parent.yaml", line, field, message);
    }
}

fn assert_reported(errors: &str, file: &str, line: usize, field: &str, message: &str) {
    let at = format!("{file}:{line}");
    assert!(
        errors
            .lines()
            .any(|l| l.contains(&at) && l.contains(field) && l.contains(message)),
        "no `{at} … {field} … {message}` in\n{errors}"
    );
}
