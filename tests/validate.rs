//! `tandem validate`: every problem in a config or runbook is reported on stderr as
//! `FILE:LINE:COL: FIELD.PATH: message` (line and column where the parser knows them) and
//! the command exits 2; a clean config and runbooks exit 0 with `ok: N runbooks`.
//!
//! Each malformed fixture is its own test, declared with [`malformed!`]: the YAML, and the
//! line, field path and message fragment it must be reported with.

use crate::harness::{token, token_sha256, unindent, Env, HostSpec, Outcome, StandardConfig};

/// A well-formed pinned host key (any ed25519 public key will do for validation).
const HOST_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKQWYIVglpvMu6LuTN5p1yiaBYBfnxw5DjkiylwTSb1S";

/// The config runbook fixtures are checked against: hosts `web1` (internal, tag `web`) and
/// `db1` (provider, tag `db`), secret `api_token`, APIs `example`
/// (`https://api.example.com/v1/`) and `hooks` (`https://hooks.example.com`), calendar
/// `freeze`.
fn base_config() -> String {
    StandardConfig::new()
        .host(HostSpec::local("web1", "internal").tags(&["web"]))
        .host(HostSpec::local("db1", "provider").tags(&["db"]))
        .extra(&unindent(
            r#"
            secrets:
              api_token:
                env: TANDEM_TEST_API_TOKEN
                owner: internal
            apis:
              example: { base_url: "https://api.example.com/v1/", owner: provider }
              hooks: { base_url: "https://hooks.example.com", owner: internal }
            calendars:
              freeze:
                periods:
                  - from: 2030-12-20T00:00:00Z
                    to: 2031-01-02T00:00:00Z
            "#,
        ))
        .to_yaml()
}

/// Where and how one problem must be reported.
struct Expected {
    /// 1-based line; `None` where the file does not show the problem at a line of its own.
    line: Option<usize>,
    /// The field path; empty for YAML syntax errors.
    field: &'static str,
    /// A fragment of the message.
    message: &'static str,
}

/// Runs `tandem validate ARGS…` in `env` and asserts that it failed as a validation error:
/// exit 2, no `ok:`, no panic.
fn validate_fails(env: &Env, args: &[&str]) -> Outcome {
    let outcome = env.command().arg("validate").args(args).run();
    outcome
        .status(2)
        .stdout_lacks("ok:")
        .output_lacks("panicked");
    outcome
}

/// Asserts that one stderr line of `outcome` reports `expected` in `file` (a path relative
/// to the env, as it ends the printed path).
fn assert_reported(outcome: &Outcome, file: &str, expected: &Expected) {
    let at = match expected.line {
        Some(line) => format!("{file}:{line}:"),
        None => file.to_string(),
    };
    let field = if expected.field.is_empty() {
        String::new()
    } else {
        format!(": {}: ", expected.field)
    };
    let reported = outcome
        .stderr
        .lines()
        .find(|l| l.contains(&at) && l.contains(&field) && l.contains(expected.message));
    let Some(line) = reported else {
        panic!(
            "expected an error line with `{at}`, `{field}` and `{}`\n{}",
            expected.message,
            outcome.dump()
        );
    };
    if expected.field.is_empty() {
        // serde_path_to_error marks a segment it could not track with `?`; a syntax error
        // has no field, so none may be shown.
        assert!(!line.contains("?:"), "placeholder field path in {line:?}");
    }
}

/// Which file a fixture replaces.
enum Kind {
    /// `runbooks/<test name>.yaml`, checked against [`base_config`].
    Runbook,
    /// `tandem.yaml` itself.
    Config,
}

/// Writes one malformed fixture and asserts that `tandem validate` reports `expected` in it.
fn assert_malformed(kind: Kind, name: &str, yaml: &str, expected: Expected) {
    let env = Env::new();
    let file = match kind {
        Kind::Runbook => {
            env.write_config(&base_config());
            let file = format!("runbooks/{name}.yaml");
            env.write(&file, unindent(yaml));
            file
        }
        Kind::Config => {
            env.write_config(&unindent(yaml));
            "tandem.yaml".to_string()
        }
    };
    assert_reported(&validate_fails(&env, &[]), &file, &expected);
}

/// One test per malformed fixture: its name and kind, where the problem must be reported,
/// and the YAML (indented freely; see [`unindent`]).
macro_rules! malformed {
    (
        $name:ident: $kind:ident,
        line: $line:expr,
        field: $field:literal,
        message: $message:literal,
        yaml: $yaml:expr $(,)?
    ) => {
        #[test]
        fn $name() {
            let expected = Expected {
                line: $line,
                field: $field,
                message: $message,
            };
            assert_malformed(Kind::$kind, stringify!($name), &$yaml, expected);
        }
    };
}

// ---- runbooks ----

malformed! {
    runbook_unknown_top_level_key: Runbook,
    line: Some(3),
    field: "steps",
    message: "unknown field `steps`",
    yaml: r#"
        name: probe
        owner: internal
        steps:
          - uptime
        script: log("hi")
    "#,
}

malformed! {
    runbook_unknown_nested_key: Runbook,
    line: Some(4),
    field: "scope.comands",
    message: "unknown field `comands`",
    yaml: r#"
        name: probe
        owner: internal
        scope:
          comands: [uptime]
        script: log("hi")
    "#,
}

malformed! {
    runbook_quorum_not_a_number: Runbook,
    line: Some(5),
    field: "approval.quorum",
    message: "many",
    yaml: r#"
        name: probe
        owner: internal
        approval:
          from: internal
          quorum: many
        script: log("hi")
    "#,
}

malformed! {
    runbook_unknown_param_type: Runbook,
    line: Some(5),
    field: "params.threshold.type",
    message: "float",
    yaml: r#"
        name: probe
        owner: internal
        params:
          threshold:
            type: float
        script: log("hi")
    "#,
}

malformed! {
    runbook_param_default_not_its_type: Runbook,
    line: Some(6),
    field: "params.threshold.default",
    message: "integer",
    yaml: r#"
        name: probe
        owner: internal
        params:
          threshold:
            type: int
            default: lots
        script: log("hi")
    "#,
}

malformed! {
    runbook_unknown_target_host: Runbook,
    line: Some(5),
    field: "targets[1]",
    message: "unknown host `nosuch`",
    yaml: r#"
        name: probe
        owner: internal
        targets:
          - web1
          - nosuch
        script: log("hi")
    "#,
}

malformed! {
    runbook_unknown_target_tag: Runbook,
    line: Some(4),
    field: "targets[0]",
    message: "nosuch",
    yaml: r#"
        name: probe
        owner: internal
        targets:
          - tag:nosuch
        script: log("hi")
    "#,
}

malformed! {
    runbook_unknown_owner: Runbook,
    line: Some(2),
    field: "owner",
    message: "unknown party `vendor`",
    yaml: r#"
        name: probe
        owner: vendor
        script: log("hi")
    "#,
}

malformed! {
    runbook_unknown_allowed_party: Runbook,
    line: Some(4),
    field: "allowed.parties[1]",
    message: "unknown party `vendor`",
    yaml: r#"
        name: probe
        owner: internal
        allowed:
          parties: [internal, vendor]
        script: log("hi")
    "#,
}

malformed! {
    runbook_unknown_allowed_role: Runbook,
    line: Some(4),
    field: "allowed.roles[0]",
    message: "superuser",
    yaml: r#"
        name: probe
        owner: internal
        allowed:
          roles: [superuser]
        script: log("hi")
    "#,
}

malformed! {
    runbook_unknown_approval_party: Runbook,
    line: Some(4),
    field: "approval.from",
    message: "unknown party `vendor`",
    yaml: r#"
        name: probe
        owner: internal
        approval:
          from: vendor
        script: log("hi")
    "#,
}

malformed! {
    runbook_unknown_secret: Runbook,
    line: Some(4),
    field: "scope.secrets[1]",
    message: "unknown secret `db_password`",
    yaml: r#"
        name: probe
        owner: internal
        scope:
          secrets: [api_token, db_password]
        script: log("hi")
    "#,
}

// An empty string cannot be searched for in the text, so no line is required.
malformed! {
    runbook_empty_command_pattern: Runbook,
    line: None,
    field: "scope.commands[1]",
    message: "empty",
    yaml: r#"
        name: probe
        owner: internal
        scope:
          commands:
            - uptime
            - ""
        script: log("hi")
    "#,
}

malformed! {
    runbook_http_rule_bad_method: Runbook,
    line: Some(4),
    field: "scope.http[0]",
    message: "FETCH",
    yaml: r#"
        name: probe
        owner: internal
        scope:
          http: ["FETCH https://api.example.com/v1/"]
        script: log("hi")
    "#,
}

malformed! {
    runbook_http_rule_without_url: Runbook,
    line: Some(6),
    field: "scope.http[1]",
    message: "METHOD URL-prefix",
    yaml: r#"
        name: probe
        owner: internal
        scope:
          http:
            - GET https://api.example.com/v1/
            - DELETE
        script: log("hi")
    "#,
}

// Rule 3: a URL outside every declared API has no owner to approve it.
malformed! {
    runbook_http_rule_outside_every_api: Runbook,
    line: Some(6),
    field: "scope.http[1]",
    message: "outside every API declared",
    yaml: r#"
        name: probe
        owner: internal
        scope:
          http:
            - GET https://api.example.com/v1/machines
            - POST https://api.example.com/v2/machines
        script: log("hi")
    "#,
}

// Same host, but another scheme, port or a sibling path is not inside the API.
malformed! {
    runbook_http_rule_beside_an_api: Runbook,
    line: Some(7),
    field: "scope.http[2]",
    message: "outside every API declared",
    yaml: r#"
        name: probe
        owner: internal
        scope:
          http:
            - GET https://hooks.example.com/deploy/
            - GET https://api.example.com/v1
            - GET http://hooks.example.com/deploy/
        script: log("hi")
    "#,
}

malformed! {
    runbook_bad_cron: Runbook,
    line: Some(4),
    field: "schedule.cron",
    message: "61 * * * *",
    yaml: r#"
        name: probe
        owner: internal
        schedule:
          cron: "61 * * * *"
        script: log("hi")
    "#,
}

malformed! {
    runbook_cron_nth_weekday_out_of_range: Runbook,
    line: Some(4),
    field: "schedule.cron",
    message: "day-of-week field, `TUE#6`: N after `#` must be 1 to 5",
    yaml: r#"
        name: probe
        owner: internal
        schedule:
          cron: "0 2 * * TUE#6"
        script: log("hi")
    "#,
}

malformed! {
    runbook_bad_rrule: Runbook,
    line: Some(4),
    field: "schedule.rrule",
    message: "FREQ=DAILY;BYHOUR=25",
    yaml: r#"
        name: probe
        owner: internal
        schedule:
          rrule: "FREQ=DAILY;BYHOUR=25"
        script: log("hi")
    "#,
}

malformed! {
    runbook_cron_at_reboot: Runbook,
    line: Some(4),
    field: "schedule.cron",
    message: "`@reboot` is not a time",
    yaml: r#"
        name: probe
        owner: internal
        schedule:
          cron: "@reboot"
        script: log("hi")
    "#,
}

malformed! {
    runbook_cron_and_rrule: Runbook,
    line: Some(3),
    field: "schedule",
    message: "give exactly one of `cron`",
    yaml: r#"
        name: probe
        owner: internal
        schedule:
          cron: "0 3 * * *"
          rrule: "FREQ=DAILY;BYHOUR=3"
        script: log("hi")
    "#,
}

malformed! {
    runbook_cron_never_fires: Runbook,
    line: Some(4),
    field: "schedule.cron",
    message: "`0 3 31 4 *` never fires",
    yaml: r#"
        name: probe
        owner: internal
        schedule:
          cron: "0 3 31 4 *"
        script: log("hi")
    "#,
}

malformed! {
    runbook_rrule_count_without_dtstart: Runbook,
    line: Some(4),
    field: "schedule.rrule",
    message: "COUNT counts occurrences from DTSTART",
    yaml: r#"
        name: probe
        owner: internal
        schedule:
          rrule: "FREQ=WEEKLY;COUNT=4;BYDAY=SA;BYHOUR=2"
        script: log("hi")
    "#,
}

malformed! {
    runbook_bad_schedule_offset: Runbook,
    line: Some(5),
    field: "schedule.offset",
    message: "`4 days later` is not an offset like 4d",
    yaml: r#"
        name: probe
        owner: internal
        schedule:
          cron: "0 2 * * TUE#2"
          offset: 4 days later
        script: log("hi")
    "#,
}

malformed! {
    runbook_bad_dtstart: Runbook,
    line: Some(5),
    field: "schedule.dtstart",
    message: "not a local date-time",
    yaml: r#"
        name: probe
        owner: internal
        schedule:
          rrule: "FREQ=WEEKLY;BYDAY=SA;BYHOUR=2"
          dtstart: next saturday
        script: log("hi")
    "#,
}

malformed! {
    runbook_bad_timezone: Runbook,
    line: Some(5),
    field: "schedule.timezone",
    message: "Mars/Olympus",
    yaml: r#"
        name: probe
        owner: internal
        schedule:
          cron: "0 3 * * *"
          timezone: Mars/Olympus
        script: log("hi")
    "#,
}

malformed! {
    runbook_unknown_blackout_calendar: Runbook,
    line: Some(6),
    field: "schedule.blackout[1]",
    message: "unknown calendar `xmas`",
    yaml: r#"
        name: probe
        owner: internal
        schedule:
          cron: "0 3 * * *"
          blackout: [freeze,
                     xmas]
        script: log("hi")
    "#,
}

malformed! {
    runbook_script_does_not_compile: Runbook,
    line: Some(3),
    field: "script",
    message: "script does not compile",
    yaml: r#"
        name: probe
        owner: internal
        script: |
          let x = ;
    "#,
}

malformed! {
    runbook_script_and_script_file: Runbook,
    line: Some(3),
    field: "script",
    message: "`script` or `script_file`",
    yaml: r#"
        name: probe
        owner: internal
        script: log("hi")
        script_file: probe.rhai
    "#,
}

malformed! {
    runbook_without_script: Runbook,
    line: None,
    field: "script",
    message: "`script` or `script_file`",
    yaml: r#"
        name: probe
        owner: internal
    "#,
}

malformed! {
    runbook_bad_timeout: Runbook,
    line: Some(3),
    field: "timeout",
    message: "soon",
    yaml: r#"
        name: probe
        owner: internal
        timeout: soon
        script: log("hi")
    "#,
}

malformed! {
    runbook_bad_rollout_batch: Runbook,
    line: Some(5),
    field: "rollout.batch",
    message: "lots",
    yaml: r#"
        name: probe
        owner: internal
        targets: [web1, db1]
        rollout:
          batch: lots
        script: log("hi")
    "#,
}

malformed! {
    runbook_tab_indentation: Runbook,
    line: Some(4),
    field: "",
    message: "character",
    yaml: "
        name: probe
        owner: internal
        scope:
        \tcommands: [uptime]
        script: log(\"hi\")
    ",
}

malformed! {
    runbook_unclosed_flow_sequence: Runbook,
    line: Some(4),
    field: "",
    message: "",
    yaml: r#"
        name: probe
        owner: internal
        targets: [web1, db1
        script: log("hi")
    "#,
}

// ---- config ----

/// A user entry of a config fixture, with the standard token hash.
fn user_yaml(name: &str, party: &str, roles: &str) -> String {
    let sha = token_sha256(&token(name));
    format!("  - name: {name}\n    party: {party}\n    roles: {roles}\n    token_sha256: {sha}\n")
}

malformed! {
    config_unknown_top_level_key: Config,
    line: Some(2),
    field: "listen_on",
    message: "unknown field `listen_on`",
    yaml: r#"
        parties: [internal, provider]
        listen_on: 127.0.0.1:8080
    "#,
}

malformed! {
    config_unknown_host_field: Config,
    line: Some(6),
    field: "inventory[0].hostkey",
    message: "unknown field `hostkey`",
    yaml: r#"
        parties: [internal, provider]
        inventory:
          - name: web1
            owner: internal
            transport: local
            hostkey: ssh-ed25519 AAAA
    "#,
}

malformed! {
    config_port_not_a_number: Config,
    line: Some(5),
    field: "inventory[0].port",
    message: "high",
    yaml: r#"
        parties: [internal, provider]
        inventory:
          - name: web1
            owner: internal
            port: high
            transport: local
    "#,
}

malformed! {
    config_ssh_host_without_host_key: Config,
    line: Some(3),
    field: "inventory[0].host_key",
    message: "host_key",
    yaml: r#"
        parties: [internal, provider]
        inventory:
          - name: web1
            owner: internal
            user: root
            identity_file: id_ed25519
    "#,
}

// The broken key is the second host's; the line must be its own, not the first host's.
malformed! {
    config_host_key_not_base64: Config,
    line: Some(12),
    field: "inventory[1].host_key",
    message: "base64",
    yaml: format!(r#"
        parties: [internal, provider]
        inventory:
          - name: web1
            owner: internal
            user: root
            identity_file: id_ed25519
            host_key: {HOST_KEY}
          - name: web2
            owner: internal
            user: root
            identity_file: id_ed25519
            host_key: ssh-ed25519 not!base64
    "#),
}

malformed! {
    config_host_unknown_owner: Config,
    line: Some(4),
    field: "inventory[0].owner",
    message: "unknown party `vendor`",
    yaml: r#"
        parties: [internal, provider]
        inventory:
          - name: web1
            owner: vendor
            transport: local
    "#,
}

malformed! {
    config_user_unknown_party: Config,
    line: Some(8),
    field: "users[1].party",
    message: "unknown party `vendor`",
    yaml: format!(
        "parties: [internal, provider]\nusers:\n{}{}",
        user_yaml("alice", "internal", "[operator]"),
        user_yaml("victor", "vendor", "[operator]"),
    ),
}

// The bad hash is the second user's; the line must be its own, not the first user's.
malformed! {
    config_token_sha256_not_hex: Config,
    line: Some(10),
    field: "users[1].token_sha256",
    message: "64 hex digits",
    yaml: format!(
        "parties: [internal, provider]\nusers:\n{}{}",
        user_yaml("alice", "internal", "[operator]"),
        user_yaml("victor", "internal", "[operator]")
            .replace(&token_sha256("tok-victor"), "not-a-hash"),
    ),
}

malformed! {
    config_secret_without_owner: Config,
    line: Some(3),
    field: "secrets.edr_token.owner",
    message: "needs an `owner`",
    yaml: r#"
        parties: [internal, provider]
        secrets:
          edr_token: { env: EDR_TOKEN }
    "#,
}

malformed! {
    config_secret_unknown_owner: Config,
    line: Some(3),
    field: "secrets.edr_token.owner",
    message: "unknown party `vendor`",
    yaml: r#"
        parties: [internal, provider]
        secrets:
          edr_token: { env: EDR_TOKEN, owner: vendor }
    "#,
}

malformed! {
    config_api_without_owner: Config,
    line: Some(3),
    field: "apis.defender.owner",
    message: "needs an `owner`",
    yaml: r#"
        parties: [internal, provider]
        apis:
          defender: { base_url: "https://api.securitycenter.microsoft.com" }
    "#,
}

malformed! {
    config_api_unknown_owner: Config,
    line: Some(4),
    field: "apis.defender.owner",
    message: "unknown party `vendor`",
    yaml: r#"
        parties: [internal, provider]
        apis:
          defender:
            owner: vendor
            base_url: "https://api.securitycenter.microsoft.com"
    "#,
}

malformed! {
    config_api_base_url_with_credentials: Config,
    line: Some(5),
    field: "apis.defender.base_url",
    message: "credentials",
    yaml: r#"
        parties: [internal, provider]
        apis:
          defender:
            owner: internal
            base_url: "https://user:pw@api.securitycenter.microsoft.com"
    "#,
}

malformed! {
    config_api_base_url_not_http: Config,
    line: Some(5),
    field: "apis.files.base_url",
    message: "http or https",
    yaml: r#"
        parties: [internal, provider]
        apis:
          files:
            owner: internal
            base_url: "ftp://files.example.com/"
    "#,
}

// Whoever presents the shared token would be taken for one of the two users.
malformed! {
    config_duplicate_token_sha256: Config,
    line: Some(10),
    field: "users[1].token_sha256",
    message: "the same token as `alice`",
    yaml: format!(
        "parties: [internal, provider]\nusers:\n{}{}",
        user_yaml("alice", "internal", "[operator]"),
        user_yaml("mallory", "internal", "[approver]")
            .replace(&token_sha256("tok-mallory"), &token_sha256("tok-alice").to_uppercase()),
    ),
}

malformed! {
    config_unknown_role: Config,
    line: Some(5),
    field: "users[0].roles[1]",
    message: "root",
    yaml: format!(
        "parties: [internal, provider]\nusers:\n{}",
        user_yaml("alice", "internal", "[operator, root]"),
    ),
}

malformed! {
    config_bad_indentation: Config,
    line: Some(4),
    field: "",
    message: "",
    yaml: r#"
        parties: [internal, provider]
        users:
          - name: alice
             party: internal
    "#,
}

// ---- whole runs ----

/// A runbook that uses every section, well-formed.
const FULL_RUNBOOK: &str = r#"
    name: patch-web
    description: Patch the web tier in batches.
    owner: internal
    params:
      reboot:
        type: bool
        default: false
        description: Reboot after patching.
      hosts_at_once:
        type: int
        default: 2
    targets:
      - web1
      - tag:db
    scope:
      commands:
        - "apt-get -y upgrade"
        - "systemctl restart *"
      http:
        - POST https://hooks.example.com/deploy/
      secrets: [api_token]
    allowed:
      parties: [internal, provider]
      roles: [operator]
    approval:
      from: provider
      quorum: 1
      expires: 4h
      on_expiry: deny
    rollout:
      parallel: 2
      batch: 50%
      max_failures: 1
    schedule:
      cron: "0 3 * * 6"
      timezone: Europe/Berlin
      window: 2h
      overlap: skip
      misfire: run_once
      blackout: [freeze]
    timeout: 90m
    script: |
      let out = sh_ok("apt-get -y upgrade");
      if params.reboot { log("would reboot " + host.name); }
"#;

#[test]
fn clean_config_and_runbooks_validate() {
    let env = Env::new();
    env.write_config(&base_config());
    env.write_runbook("patch-web.yaml", &unindent(FULL_RUNBOOK));
    env.write("runbooks/restart.rhai", "log(\"restarting\");\n");
    env.write_runbook(
        "restart.yml",
        &unindent(
            r#"
            name: restart
            owner: provider
            targets: [db1]
            script_file: restart.rhai
            "#,
        ),
    );
    env.tandem(["validate"])
        .success()
        .stdout_contains("ok: 2 runbooks")
        .output_lacks("panicked");
}

#[test]
fn clean_config_with_a_pinned_ssh_host_validates() {
    let env = Env::new();
    env.write_config(&unindent(&format!(
        r#"
        parties: [internal, provider]
        inventory:
          - name: web1
            owner: internal
            address: 127.0.0.1
            port: 2222
            user: root
            identity_file: id_ed25519
            host_key: {HOST_KEY}
        "#
    )));
    env.tandem(["validate"])
        .success()
        .stdout_contains("ok: 0 runbooks");
}

/// Shorthand for an [`Expected`] in the tests below.
fn at(line: usize, field: &'static str, message: &'static str) -> Expected {
    Expected {
        line: Some(line),
        field,
        message,
    }
}

#[test]
fn every_problem_of_a_file_is_reported() {
    let env = Env::new();
    env.write_config(&base_config());
    env.write_runbook(
        "two.yaml",
        &unindent(
            r#"
            name: two
            owner: internal
            targets: [nosuch]
            scope:
              secrets: [db_password]
            timeout: soon
            script: log("hi")
            "#,
        ),
    );
    let outcome = validate_fails(&env, &[]);
    let file = "runbooks/two.yaml";
    assert_reported(
        &outcome,
        file,
        &at(3, "targets[0]", "unknown host `nosuch`"),
    );
    assert_reported(&outcome, file, &at(5, "scope.secrets[0]", "db_password"));
    assert_reported(&outcome, file, &at(6, "timeout", "soon"));
}

#[test]
fn problems_in_several_runbooks_are_all_reported() {
    let env = Env::new();
    env.write_config(&base_config());
    let book = |owner: &str| format!("name: {owner}-book\nowner: {owner}\nscript: log(1)\n");
    env.write_runbook("a.yaml", &book("vendor"));
    env.write_runbook("b.yaml", &book("outsider"));
    env.write_runbook("ok.yaml", &book("internal"));
    let outcome = validate_fails(&env, &[]);
    assert_reported(
        &outcome,
        "runbooks/a.yaml",
        &at(2, "owner", "unknown party `vendor`"),
    );
    assert_reported(
        &outcome,
        "runbooks/b.yaml",
        &at(2, "owner", "unknown party `outsider`"),
    );
    outcome.stderr_lacks("ok.yaml");
}

#[test]
fn two_runbooks_with_one_name_are_reported() {
    let env = Env::new();
    env.write_config(&base_config());
    let book = "name: same\nowner: internal\nscript: log(1)\n";
    env.write_runbook("one.yaml", book);
    env.write_runbook("two.yaml", book);
    let outcome = validate_fails(&env, &[]);
    let duplicate = Expected {
        line: None,
        field: "name",
        message: "same",
    };
    assert_reported(&outcome, "runbooks/two.yaml", &duplicate);
}

#[test]
fn validate_checks_the_given_paths_against_the_config() {
    let env = Env::new();
    env.write_config(&base_config());
    // A broken runbook in runbooks/ is not looked at when paths are given.
    env.write_runbook(
        "broken.yaml",
        "name: broken\nowner: vendor\nscript: log(1)\n",
    );
    env.write(
        "drafts/good.yaml",
        "name: good\nowner: internal\ntargets: [web1]\nscript: log(1)\n",
    );
    env.write(
        "drafts/bad.yaml",
        "name: bad\nowner: internal\ntargets: [web9]\nscript: log(1)\n",
    );

    env.tandem(["validate", "drafts/good.yaml"])
        .success()
        .stdout_contains("ok: 1 runbooks")
        .stderr_lacks("broken.yaml");
    let outcome = validate_fails(&env, &["drafts/good.yaml", "drafts/bad.yaml"]);
    assert_reported(
        &outcome,
        "drafts/bad.yaml",
        &at(3, "targets[0]", "unknown host `web9`"),
    );
    outcome
        .stderr_lacks("good.yaml")
        .stderr_lacks("broken.yaml");
}

#[test]
fn missing_config_is_an_error_naming_it() {
    let env = Env::new();
    validate_fails(&env, &[]).stderr_contains("tandem.yaml");
}

#[test]
fn field_path_is_printed_once() {
    let env = Env::new();
    env.write_config(&base_config());
    env.write_runbook(
        "typo.yaml",
        "name: typo\nowner: internal\nscope:\n  comands: [uptime]\nscript: log(1)\n",
    );
    // serde_yaml puts the path in front of its own message; the prefix is printed once.
    validate_fails(&env, &[]).stderr_contains("scope.comands: unknown field `comands`");
}

#[test]
fn each_problem_is_one_line() {
    let env = Env::new();
    env.write_config(&base_config());
    // The cron crate's own message spans several lines, with a caret under the error.
    env.write_runbook(
        "cron.yaml",
        "name: cron\nowner: internal\nschedule:\n  cron: \"61 * * * *\"\nscript: log(1)\n",
    );
    let outcome = validate_fails(&env, &[]);
    for line in outcome.stderr.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            line.contains("cron.yaml:"),
            "a line that is not a located error: {line:?}\n{}",
            outcome.dump()
        );
    }
}

malformed! {
    runbook_output_limit_not_a_size: Runbook,
    line: Some(5),
    field: "output.action_max",
    message: "is not a size like",
    yaml: r#"
        name: probe
        owner: internal
        output:
          run_max: 64MiB
          action_max: lots
        script: log("hi")
    "#,
}

malformed! {
    runbook_output_limit_too_small: Runbook,
    line: Some(4),
    field: "output.script_max",
    message: "below the smallest limit",
    yaml: r#"
        name: probe
        owner: internal
        output:
          script_max: 10
        script: log("hi")
    "#,
}

malformed! {
    runbook_output_unknown_key: Runbook,
    line: Some(4),
    field: "output.max",
    message: "unknown field `max`",
    yaml: r#"
        name: probe
        owner: internal
        output:
          max: 1MiB
        script: log("hi")
    "#,
}

#[test]
fn a_schedule_restricting_both_day_fields_warns_which_days_and_passes() {
    let env = Env::new();
    env.write_config(&base_config());
    env.write_runbook(
        "twice.yaml",
        "name: twice\nowner: internal\nschedule:\n  timezone: UTC\n  cron: \"0 3 1,15 * 1\"\nscript: log(1)\n",
    );
    env.write_runbook(
        "patch.yaml",
        "name: patch\nowner: internal\nschedule: { cron: \"0 2 * * TUE#2\", offset: 4d }\nscript: log(1)\n",
    );
    let outcome = env.command().arg("validate").run();
    outcome
        .status(0)
        .stdout_contains("ok: 2 runbooks")
        .stderr_contains("warning: ")
        .stderr_contains(
            "twice.yaml:5:3: schedule.cron: fires on the 1st and 15th of the month AND on \
             every Monday (crontab ORs the two day fields",
        )
        .stderr_lacks("patch.yaml");
}
