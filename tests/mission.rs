//! The mission runbooks of `runbooks/`, as shipped, proven on real hosts: network namespaces
//! with their own sshd ([`NetnsHost`]), real nftables, a real restic repository, a real apt
//! upgrade of a dummy package from a local repository, and a local HTTP server in the shape
//! of Microsoft Defender for Endpoint's machine actions API.
//!
//! Tools the runbooks need on a host (nft, restic, dpkg-deb, dpkg-scanpackages) are
//! installed with apt-get when missing; the tests run as root, as in CI.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::approvals::approve;
use crate::harness::{
    token, wait_until, Daemon, Env, HostSpec, HttpStub, NetnsHost, StandardConfig,
};
use crate::run_flow::{audit_records, get_run, id_of, log_lines, start_run, wait_final};

/// How long a mission run may take on a loaded 2-core machine (restic, apt).
const MISSION_RUN_TIMEOUT: Duration = Duration::from_secs(180);

/// How long a probe waits for a TCP connection that should be dropped.
const DROPPED_PROBE: Duration = Duration::from_secs(2);

/// How long a path that should be open may take to answer.
const OPEN_PATH: Duration = Duration::from_secs(20);

/// A runbook file of the repository, as shipped.
fn shipped_runbook(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("runbooks")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Copies shipped runbooks into the env, unchanged.
fn install_runbooks(env: &Env, files: &[&str]) {
    for file in files {
        env.write_runbook(file, &shipped_runbook(file));
    }
}

/// The run's log as text, one line per log line.
fn log_text(daemon: &Daemon, id: &str) -> String {
    log_lines(daemon, id)
        .iter()
        .map(|l| l["line"].as_str().unwrap_or_default().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Starts a run as `user`, waits for its end and returns it with its log.
fn run_mission(daemon: &Daemon, user: &str, runbook: &str, params: Value) -> (Value, String) {
    let run = start_run(daemon, user, runbook, params);
    let id = id_of(&run);
    let run = wait_final(daemon, &id, MISSION_RUN_TIMEOUT);
    let log = log_text(daemon, &id);
    (run, log)
}

/// The value `host` emitted for `key` in run `id`, from the audit log (what the report reads).
fn emitted(daemon: &Daemon, id: &str, host: &str, key: &str) -> Option<Value> {
    audit_records(daemon)
        .into_iter()
        .find(|r| {
            r["event"] == "emitted"
                && r["run_id"] == id
                && r["detail"]["host"] == host
                && r["detail"]["key"] == key
        })
        .map(|r| r["detail"]["value"].clone())
}

/// Asserts the run ended `status`, showing the run and its log otherwise.
fn assert_status(run: &Value, log: &str, status: &str) {
    assert_eq!(run["status"], status, "{run:#}\n--- log ---\n{log}");
}

/// The error of the run's first host.
fn host_error(run: &Value) -> String {
    run["hosts"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Asserts that `secret` is nowhere in the runs' logs nor in the audit log (rule 9).
fn assert_never_shown(daemon: &Daemon, run_ids: &[&str], secret: &str) {
    for id in run_ids {
        let log = log_text(daemon, id);
        assert!(!log.contains(secret), "run {id}'s log shows the secret");
        let run = get_run(daemon, id).to_string();
        assert!(!run.contains(secret), "run {id} shows the secret");
    }
    let audit = serde_json::to_string(&audit_records(daemon)).expect("audit as JSON");
    assert!(!audit.contains(secret), "the audit log shows the secret");
}

// Tools on the machine. The machine's dpkg database is shared by every test that installs
// a tool or upgrades the dummy package, so all of them take turns.

static APT: Mutex<()> = Mutex::new(());

fn apt_turn() -> MutexGuard<'static, ()> {
    APT.lock().unwrap_or_else(|e| e.into_inner())
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs `package` with apt-get when `program` is missing; panics when that fails.
fn ensure_tool(program: &str, package: &str) {
    if have(program) {
        return;
    }
    let _turn = apt_turn();
    if have(program) {
        return;
    }
    // Fresh lists once; if that fails, the install below says what is wrong.
    static UPDATED: OnceLock<()> = OnceLock::new();
    UPDATED.get_or_init(|| {
        let _ = apt_get_output(&["update"]);
    });
    apt_get(&["install", "-y", "--no-install-recommends", package]);
    assert!(
        have(program),
        "apt-get installed {package}, but {program} is still missing"
    );
}

/// `apt-get -q ARGS`, waiting up to 10 minutes for a dpkg lock held by anything else.
fn apt_get_output(args: &[&str]) -> std::process::Output {
    Command::new("apt-get")
        .args(["-q", "-o", "DPkg::Lock::Timeout=600"])
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run apt-get {args:?}: {e}"))
}

/// `apt-get -q ARGS`; panics with its output when it fails.
fn apt_get(args: &[&str]) {
    let out = apt_get_output(args);
    assert!(
        out.status.success(),
        "apt-get {args:?} failed (the mission tests install the tools the runbooks need; \
         they need root and Debian's package archive): {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a program on this machine; panics with its output when it fails.
fn run(program: &str, args: &[&str], vars: &[(&str, &str)], dir: Option<&Path>) -> String {
    let mut command = Command::new(program);
    command
        .args(args)
        .envs(vars.iter().copied())
        .stdin(Stdio::null());
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create temp dir")
}

// The example config.

#[test]
fn mission_runbooks_load_with_the_example_configs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for config in ["examples/mission.yaml", "examples/tandem.yaml"] {
        let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
            .arg("--config")
            .arg(root.join(config))
            .arg("validate")
            .current_dir(root)
            .env_remove("TANDEM_SERVER")
            .env_remove("TANDEM_TOKEN")
            .output()
            .expect("run tandem validate");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.starts_with("ok: "),
            "tandem --config {config} validate: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let loaded: usize = stdout
            .trim_start_matches("ok: ")
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_default();
        assert!(
            loaded >= 7,
            "{config}: only {loaded} runbooks loaded: {stdout}"
        );
    }
}

// Isolation on the host, and evidence from the isolated host.

#[test]
fn isolate_device_leaves_only_tandems_ssh_and_release_device_undoes_it() {
    ensure_tool("nft", "nftables");
    let host = NetnsHost::start();
    let peer = host.add_peer();
    let ssh_port = host.sshd().port();
    // A service in the test's namespace that the host may reach before isolation.
    let outside = TcpListener::bind((host.mgmt_address(), 0)).expect("bind a listener");
    let outside_port = outside.local_addr().expect("listener address").port();

    let env = Env::new();
    env.write_config(
        &StandardConfig::new()
            .host(HostSpec::ssh("web1", "internal", host.sshd()).tags(&["linux"]))
            .to_yaml(),
    );
    install_runbooks(
        &env,
        &[
            "isolate-device.yaml",
            "release-device.yaml",
            "collect-evidence.yaml",
        ],
    );
    let daemon = Daemon::start(&env);

    // Before: the rest of the network reaches the host, and the host reaches out.
    wait_until(OPEN_PATH, "the peer to reach the host's sshd", || {
        peer.netns()
            .tcp_connects(peer.host_address(), ssh_port, DROPPED_PROBE)
    });
    assert!(
        host.netns()
            .tcp_connects(host.mgmt_address(), outside_port, OPEN_PATH),
        "before isolation the host cannot reach out"
    );

    // A management address other than tandem's own would cut tandem off: refused, and
    // nothing changes.
    let (run, log) = run_mission(
        &daemon,
        "alice",
        "isolate-device",
        json!({"device": "web1", "mgmt_address": "198.51.100.1"}),
    );
    assert_status(&run, &log, "failed");
    assert!(host_error(&run).contains("would cut tandem off"), "{run:#}");
    assert!(
        peer.netns()
            .tcp_connects(peer.host_address(), ssh_port, OPEN_PATH),
        "a refused isolation changed the network"
    );

    // The provider's SOC isolates internal IT's host break-glass: it runs at once.
    let (status, started) = daemon.post(
        "/api/v1/runs",
        &token("paula"),
        &json!({
            "runbook": "isolate-device",
            "params": {"device": "web1", "reason": "EDR alert 4711"},
            "break_glass": true,
            "reason": "active ransomware alert on web1",
        }),
    );
    assert_eq!(status, 201, "{started}");
    let isolate_id = id_of(&started);
    let run = wait_final(&daemon, &isolate_id, MISSION_RUN_TIMEOUT);
    let log = log_text(&daemon, &isolate_id);
    assert_status(&run, &log, "succeeded");
    assert_eq!(run["break_glass"], true, "{run:#}");
    let mgmt = host.mgmt_address();
    assert!(
        log.contains(&format!(
            "ISOLATED (EDR alert 4711): all traffic dropped except SSH from {mgmt} to port {ssh_port}"
        )),
        "{log}"
    );
    let table = host
        .netns()
        .run("nft", &["list", "table", "inet", "tandem_isolation"]);
    assert!(table.contains("policy drop"), "{table}");

    // After: the peer can no longer reach even sshd, the host cannot reach out...
    assert!(
        !peer
            .netns()
            .tcp_connects(peer.host_address(), ssh_port, DROPPED_PROBE),
        "the peer still reaches the isolated host"
    );
    assert!(
        !host.netns().tcp_connects(mgmt, outside_port, DROPPED_PROBE),
        "the isolated host still reaches out"
    );
    // ...while tandem still runs commands there: evidence from the isolated host.
    let (run, log) = run_mission(&daemon, "alice", "collect-evidence", json!({}));
    assert_status(&run, &log, "succeeded");
    for part in [
        "=== evidence web1: processes (ps auxww) ===",
        "=== evidence web1: connections (ss -tunap) ===",
        "=== evidence web1: users (who) ===",
        "=== evidence web1: authentication log (",
        "collect-evidence web1: lines collected:",
    ] {
        assert!(log.contains(part), "evidence lacks {part:?}\n{log}");
    }
    // The connection list holds tandem's own SSH session to the host, with its process.
    assert!(
        log.lines()
            .any(|l| l.contains("ESTAB") && l.contains(&format!("{mgmt}:")) && l.contains("sshd")),
        "no established SSH session from {mgmt} in the evidence\n{log}"
    );

    // Release: exactly the table goes, and traffic flows again.
    let (run, log) = run_mission(
        &daemon,
        "alice",
        "release-device",
        json!({"device": "web1", "reason": "alert closed"}),
    );
    assert_status(&run, &log, "succeeded");
    assert!(log.contains("RELEASED (alert closed)"), "{log}");
    let tables = host.netns().run("nft", &["list", "tables"]);
    assert!(!tables.contains("tandem_isolation"), "{tables}");
    wait_until(OPEN_PATH, "the peer to reach the released host", || {
        peer.netns()
            .tcp_connects(peer.host_address(), ssh_port, DROPPED_PROBE)
    });
    assert!(
        host.netns().tcp_connects(mgmt, outside_port, OPEN_PATH),
        "the released host cannot reach out"
    );

    // Releasing a host that is not isolated changes nothing and says so.
    let (run, log) = run_mission(
        &daemon,
        "alice",
        "release-device",
        json!({"device": "web1"}),
    );
    assert_status(&run, &log, "succeeded");
    assert!(log.contains("not isolated by tandem"), "{log}");
}

/// The incident chain: the provider's SOC isolates internal IT's host break-glass at 3 a.m.;
/// isolate-device emits the device and its `then:` requests collect-evidence for it. The
/// evidence run is a run of its own, requested as the SOC operator: it is not break-glass,
/// so it waits for internal IT's approval although the isolation did not, and then
/// collects from the isolated host over the management path.
#[test]
fn isolation_chains_into_evidence_that_waits_for_its_own_approval() {
    ensure_tool("nft", "nftables");
    let host = NetnsHost::start();
    let env = Env::new();
    env.write_config(
        &StandardConfig::new()
            .host(HostSpec::ssh("web1", "internal", host.sshd()).tags(&["linux"]))
            .to_yaml(),
    );
    install_runbooks(
        &env,
        &[
            "isolate-device.yaml",
            "release-device.yaml",
            "collect-evidence.yaml",
        ],
    );
    let daemon = Daemon::start(&env);

    let (status, started) = daemon.post(
        "/api/v1/runs",
        &token("paula"),
        &json!({
            "runbook": "isolate-device",
            "params": {"device": "web1", "reason": "EDR alert 4712"},
            "break_glass": true,
            "reason": "ransomware alert on web1",
        }),
    );
    assert_eq!(status, 201, "{started}");
    let parent_id = id_of(&started);
    let parent = wait_final(&daemon, &parent_id, MISSION_RUN_TIMEOUT);
    assert_status(&parent, &log_text(&daemon, &parent_id), "succeeded");

    // The follow-up is requested right after the parent's end is recorded.
    let child_id =
        crate::harness::wait_for(Duration::from_secs(30), "the evidence follow-up", || {
            get_run(&daemon, &parent_id)["children"][0]
                .as_str()
                .map(str::to_string)
        });
    let child = get_run(&daemon, &child_id);
    assert_eq!(child["runbook"], "collect-evidence", "{child:#}");
    assert_eq!(child["status"], "awaiting_approval", "{child:#}");
    assert_eq!(child["break_glass"], false, "{child:#}");
    assert_eq!(child["parent_run"], parent_id.as_str());
    assert_eq!(
        child["initiator"],
        json!({"user": "paula", "party": "provider"})
    );
    // The device the isolation emitted, substituted into the evidence run's params.
    assert_eq!(child["plan"]["params"]["device"], "web1", "{child:#}");
    assert_eq!(
        child["plan"]["approvals"][0]["party"], "internal",
        "{child:#}"
    );
    let chained = audit_records(&daemon)
        .into_iter()
        .find(|r| r["event"] == "chain_started")
        .expect("a chain_started record");
    assert_eq!(chained["run_id"], parent_id.as_str());
    assert_eq!(chained["detail"]["child"], child_id.as_str());

    // Internal IT approves; the evidence comes from the isolated host.
    let (status, body) = approve(&daemon, "ivan", &child_id);
    assert_eq!(status, 200, "{body}");
    let child = wait_final(&daemon, &child_id, MISSION_RUN_TIMEOUT);
    let log = log_text(&daemon, &child_id);
    assert_status(&child, &log, "succeeded");
    assert!(
        log.contains("=== evidence web1: connections (ss -tunap) ==="),
        "{log}"
    );
    let table = host
        .netns()
        .run("nft", &["list", "table", "inet", "tandem_isolation"]);
    assert!(table.contains("policy drop"), "still isolated: {table}");
}

// Backup restore test.

/// Writes a folder of files and its `MANIFEST.sha256` (paths relative to the folder).
fn write_backup_source(dir: &Path) {
    std::fs::create_dir_all(dir.join("db")).expect("create source folders");
    let mut files: Vec<(String, Vec<u8>)> = vec![
        ("notes.txt".into(), b"quarterly numbers\n".to_vec()),
        (
            "db/dump.sql".into(),
            b"INSERT INTO t VALUES (1);\n".repeat(2000),
        ),
    ];
    // Bytes restic cannot deduplicate or compress away.
    let mut block = Sha256::digest(b"seed").to_vec();
    let mut noise = Vec::new();
    while noise.len() < 300_000 {
        block = Sha256::digest(&block).to_vec();
        noise.extend_from_slice(&block);
    }
    files.push(("db/blob.bin".into(), noise));
    let mut manifest = String::new();
    for (name, bytes) in &files {
        std::fs::write(dir.join(name), bytes).expect("write source file");
        manifest += &format!("{}  {name}\n", hex::encode(Sha256::digest(bytes)));
    }
    std::fs::write(dir.join("MANIFEST.sha256"), manifest).expect("write manifest");
}

/// Flips bytes in the middle of every pack file of the repository.
fn corrupt_packs(repo: &Path) -> usize {
    let mut packs = Vec::new();
    let mut folders = vec![repo.join("data")];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("read repo/data") {
            let path = entry.expect("repo entry").path();
            if path.is_dir() {
                folders.push(path);
            } else {
                packs.push(path);
            }
        }
    }
    for pack in &packs {
        let mut bytes = std::fs::read(pack).expect("read pack");
        let middle = bytes.len() / 2;
        let end = (middle + 16).min(bytes.len());
        for b in &mut bytes[middle..end] {
            *b ^= 0xff;
        }
        // Pack files are read-only; root writes them anyway.
        std::fs::write(pack, bytes).expect("overwrite pack");
    }
    packs.len()
}

fn scratch_dir(run_id: &str) -> PathBuf {
    PathBuf::from(format!("/var/tmp/tandem-restore-test-{run_id}"))
}

#[test]
fn backup_restore_test_verifies_a_real_restore_and_fails_loudly_on_damage() {
    ensure_tool("restic", "restic");
    let work = temp_dir("tandem-mission-restic-");
    let source = work.path().join("data");
    let repo = work.path().join("repo");
    let password = "mission-restic-7f3a9c2e-pw";
    write_backup_source(&source);
    let restic_env = [
        ("RESTIC_REPOSITORY", repo.to_str().expect("utf-8 path")),
        ("RESTIC_PASSWORD", password),
    ];
    let backup = || {
        run(
            "restic",
            &[
                "--no-cache",
                "-q",
                "backup",
                source.to_str().expect("utf-8 path"),
            ],
            &restic_env,
            None,
        )
    };
    run("restic", &["--no-cache", "-q", "init"], &restic_env, None);
    backup();

    let host = NetnsHost::start();
    let env = Env::new();
    env.write_config(
        &StandardConfig::new()
            .host(HostSpec::ssh("nas1", "internal", host.sshd()).tags(&["restic"]))
            .extra(
                "secrets:\n  restic_repository: { env: MISSION_RESTIC_REPOSITORY, owner: internal }\n  \
                 restic_password: { env: MISSION_RESTIC_PASSWORD, owner: internal }\n",
            )
            .to_yaml(),
    );
    install_runbooks(&env, &["backup-restore-test.yaml"]);
    let daemon = Daemon::start_with(
        &env,
        &[
            (
                "MISSION_RESTIC_REPOSITORY",
                repo.to_str().expect("utf-8 path"),
            ),
            ("MISSION_RESTIC_PASSWORD", password),
        ],
    );

    // A good snapshot: restored, checked, measured, cleaned up.
    let (run, log) = run_mission(&daemon, "alice", "backup-restore-test", json!({}));
    assert_status(&run, &log, "succeeded");
    let good_id = id_of(&run);
    assert!(
        log.contains("backup-restore-test nas1: OK: snapshot ")
            && log.contains("restic check passed, 3 files match 1 manifest(s); RTO "),
        "{log}"
    );
    assert!(log.contains("(measured RTO)"), "{log}");
    assert!(
        !scratch_dir(&good_id).exists(),
        "the scratch folder is left"
    );
    // The measures the business-review report charts are audited.
    for key in ["restore_ms", "restore_bytes", "restore_files"] {
        let v = emitted(&daemon, &good_id, "nas1", key);
        assert!(v.as_ref().and_then(Value::as_u64).is_some(), "{key}: {v:?}");
    }

    // A snapshot whose data no longer matches its manifest: a checksum mismatch.
    std::fs::write(source.join("notes.txt"), b"quarterly numbers, edited\n").expect("edit");
    backup();
    let (run, log) = run_mission(&daemon, "alice", "backup-restore-test", json!({}));
    assert_status(&run, &log, "failed");
    let mismatch_id = id_of(&run);
    let error = host_error(&run);
    assert!(
        error.contains("FAILED: checksum MISMATCH") && error.contains("notes.txt"),
        "{run:#}\n{log}"
    );
    assert!(
        !scratch_dir(&mismatch_id).exists(),
        "the scratch folder is left"
    );
    // A failed test emits no measure: the report counts it as failed.
    assert_eq!(emitted(&daemon, &mismatch_id, "nas1", "restore_ms"), None);

    // Damaged pack files: restic itself finds them, the run fails.
    assert!(corrupt_packs(&repo) > 0, "no pack files to corrupt");
    let (run, log) = run_mission(&daemon, "alice", "backup-restore-test", json!({}));
    assert_status(&run, &log, "failed");
    let damaged_id = id_of(&run);
    let error = host_error(&run);
    assert!(
        error.contains("FAILED: restic check failed")
            || error.contains("FAILED: restic restore failed"),
        "{run:#}\n{log}"
    );
    assert!(
        !scratch_dir(&damaged_id).exists(),
        "the scratch folder is left"
    );

    // Neither secret shows anywhere (rule 9), though both were on restic's command line.
    let ids = [good_id.as_str(), mismatch_id.as_str(), damaged_id.as_str()];
    assert_never_shown(&daemon, &ids, password);
    assert_never_shown(&daemon, &ids, repo.to_str().expect("utf-8 path"));
}

// Patch window.

const DUMMY: &str = "tandem-mission-dummy";

/// Builds the dummy package in `version` into `out` and returns the .deb's path.
fn build_dummy(work: &Path, version: &str, out: &Path) -> PathBuf {
    let root = work.join(format!("pkg-{version}"));
    std::fs::create_dir_all(root.join("DEBIAN")).expect("create DEBIAN");
    std::fs::create_dir_all(root.join("usr/share").join(DUMMY)).expect("create share");
    std::fs::write(
        root.join("DEBIAN/control"),
        format!(
            "Package: {DUMMY}\nVersion: {version}\nArchitecture: all\n\
             Maintainer: tandem tests <tests@invalid>\n\
             Description: dummy package of the tandem mission tests\n"
        ),
    )
    .expect("write control");
    std::fs::write(
        root.join("usr/share").join(DUMMY).join("version"),
        format!("{version}\n"),
    )
    .expect("write payload");
    let deb = out.join(format!("{DUMMY}_{version}_all.deb"));
    run(
        "dpkg-deb",
        &[
            "--root-owner-group",
            "--build",
            root.to_str().expect("utf-8 path"),
            deb.to_str().expect("utf-8 path"),
        ],
        &[],
        None,
    );
    deb
}

/// The dummy package's installed version, if any.
fn dummy_version() -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status} ${Version}", DUMMY])
        .output()
        .expect("run dpkg-query");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.strip_prefix("install ok installed ")
        .map(|v| v.trim().to_string())
}

/// Purges the dummy package when the test ends, however it ends.
struct PurgeDummy;

impl Drop for PurgeDummy {
    fn drop(&mut self) {
        let _ = Command::new("apt-get")
            .args(["-q", "-y", "-o", "DPkg::Lock::Timeout=600", "purge", DUMMY])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn patch_window_upgrades_only_the_named_package_from_a_local_repository() {
    ensure_tool("dpkg-deb", "dpkg");
    ensure_tool("dpkg-scanpackages", "dpkg-dev");
    let work = temp_dir("tandem-mission-apt-");
    let w = work.path();
    let build = w.join("build");
    let repo = w.join("repo");
    for folder in [
        &build,
        &repo,
        &w.join("lists/partial"),
        &w.join("cache/archives/partial"),
    ] {
        std::fs::create_dir_all(folder).expect("create apt folders");
    }
    let old = build_dummy(w, "1.0", &build);
    build_dummy(w, "2.0", &repo);
    let packages = run(
        "dpkg-scanpackages",
        &["--multiversion", ".", "/dev/null"],
        &[],
        Some(&repo),
    );
    std::fs::write(repo.join("Packages"), packages).expect("write Packages");
    let sources = w.join("sources.list");
    std::fs::write(
        &sources,
        format!("deb [trusted=yes] file:{} ./\n", repo.display()),
    )
    .expect("write sources.list");
    // Only this list, lists folder and cache: the machine's own sources are never read and
    // nothing but the dummy package can be upgraded.
    let apt_options = json!([
        format!("Dir::Etc::sourcelist={}", sources.display()),
        "Dir::Etc::sourceparts=-",
        "APT::Get::List-Cleanup=0",
        format!("Dir::State::Lists={}", w.join("lists").display()),
        format!("Dir::Cache={}", w.join("cache").display()),
    ]);

    let host = NetnsHost::start();
    let env = Env::new();
    env.write_config(
        &StandardConfig::new()
            .host(HostSpec::ssh("deb1", "internal", host.sshd()).tags(&["debian"]))
            .to_yaml(),
    );
    install_runbooks(&env, &["patch-window.yaml"]);
    let daemon = Daemon::start(&env);

    // The machine's dpkg is shared: no tool install runs while the dummy is handled.
    let _turn = apt_turn();
    let _purge = PurgeDummy;
    // apt-get rather than dpkg -i: it waits for a dpkg lock held by anything else.
    apt_get(&["install", "-y", old.to_str().expect("utf-8 path")]);
    assert_eq!(dummy_version().as_deref(), Some("1.0"));

    // An apt setting that could run a program is refused before anything happens.
    let (run, log) = run_mission(
        &daemon,
        "alice",
        "patch-window",
        json!({"packages": [DUMMY], "apt_options": ["DPkg::Post-Invoke::=touch /tmp/x"]}),
    );
    assert_status(&run, &log, "failed");
    assert!(
        host_error(&run).contains("is not one this runbook passes on"),
        "{run:#}"
    );

    // A service that is not active fails the pre-check: nothing is upgraded.
    let (run, log) = run_mission(
        &daemon,
        "alice",
        "patch-window",
        json!({
            "packages": [DUMMY],
            "services": ["tandem-mission-no-such.service"],
            "apt_options": apt_options,
            "min_free_mb": 10,
        }),
    );
    assert_status(&run, &log, "failed");
    assert!(
        host_error(&run).contains("pre-check: not active"),
        "{run:#}\n{log}"
    );
    assert_eq!(dummy_version().as_deref(), Some("1.0"), "upgraded anyway");

    // The real thing: refresh, list, upgrade only the dummy, check, summarize.
    let (run, log) = run_mission(
        &daemon,
        "alice",
        "patch-window",
        json!({"packages": [DUMMY], "apt_options": apt_options, "min_free_mb": 10}),
    );
    assert_status(&run, &log, "succeeded");
    assert_eq!(dummy_version().as_deref(), Some("2.0"), "{log}");
    assert!(
        log.contains(&format!(
            "deb1: 1 package(s) to upgrade: {DUMMY} 1.0 -> 2.0"
        )),
        "{log}"
    );
    assert!(
        log.lines().any(|l| l.starts_with(&format!(
            "patch-window deb1: upgraded 1 package(s): {DUMMY} 1.0 -> 2.0; reboot "
        ))),
        "no summary line\n{log}"
    );
    // What the business-review report counts as this host's patch.
    assert_eq!(
        emitted(&daemon, &id_of(&run), "deb1", "packages_changed"),
        Some(json!(1))
    );

    // Once more: nothing left to upgrade, and the summary says so.
    let (run, log) = run_mission(
        &daemon,
        "alice",
        "patch-window",
        json!({"packages": [DUMMY], "apt_options": apt_options, "min_free_mb": 10}),
    );
    assert_status(&run, &log, "succeeded");
    assert!(log.contains("deb1: nothing to upgrade"), "{log}");
    assert!(
        log.contains("patch-window deb1: upgraded 0 packages;"),
        "{log}"
    );
}

// EDR isolation through the vendor's API.

/// An env with the shipped edr runbooks pointed at `defender`, a local stand-in for the
/// Defender API, declared in the config as internal IT's API with internal IT's token, and
/// a daemon on it with the token `edr_token` in its environment.
fn edr_daemon(defender: &HttpStub, edr_token: &str) -> (Env, Daemon) {
    let env = Env::new();
    env.write_config(
        &StandardConfig::new()
            .api("defender", &defender.url(), "internal")
            .extra("secrets:\n  edr_token: { env: MISSION_EDR_TOKEN, owner: internal }\n")
            .to_yaml(),
    );
    for file in ["edr-isolate.yaml", "edr-release.yaml"] {
        let shipped = shipped_runbook(file);
        let local = shipped.replace("https://api.securitycenter.microsoft.com", &defender.url());
        assert_ne!(local, shipped, "{file} no longer names the Defender API");
        assert!(
            !local.contains("api_base"),
            "{file} lets a param steer the URL"
        );
        env.write_runbook(file, &local);
    }
    let daemon = Daemon::start_with(&env, &[("MISSION_EDR_TOKEN", edr_token)]);
    (env, daemon)
}

#[test]
fn edr_runbooks_call_the_defender_machine_actions_api_and_never_show_the_token() {
    // Defender answers a machine action with 201 Created; the third call is refused.
    let defender = HttpStub::with_statuses(&[201, 201, 403]);
    let edr_token = "edr-token-4c1d8e0b-never-logged";
    let machine = "7f2a1c9b0e4d3a6f8b5c2e1d0a9f8e7d6c5b4a39";
    let (_env, daemon) = edr_daemon(&defender, edr_token);

    // The provider's SOC isolates break-glass.
    let (status, started) = daemon.post(
        "/api/v1/runs",
        &token("paula"),
        &json!({
            "runbook": "edr-isolate",
            "params": {"machine_id": machine, "reason": "ransomware alert 4711"},
            "break_glass": true,
            "reason": "encryption in progress",
        }),
    );
    assert_eq!(status, 201, "{started}");
    let isolate_id = id_of(&started);
    let run = wait_final(&daemon, &isolate_id, MISSION_RUN_TIMEOUT);
    let log = log_text(&daemon, &isolate_id);
    assert_status(&run, &log, "succeeded");
    assert!(
        log.contains("isolation (Full) accepted by the EDR: HTTP 201"),
        "{log}"
    );

    // Release needs internal IT's approval.
    let started = start_run(
        &daemon,
        "alice",
        "edr-release",
        json!({"machine_id": machine, "reason": "machine reimaged"}),
    );
    let release_id = id_of(&started);
    assert_eq!(started["status"], "awaiting_approval", "{started}");
    assert!(
        defender.requests_to("/api/machines").len() == 1,
        "released before the approval"
    );
    let (status, body) = approve(&daemon, "ivan", &release_id);
    assert_eq!(status, 200, "{body}");
    let run = wait_final(&daemon, &release_id, MISSION_RUN_TIMEOUT);
    let log = log_text(&daemon, &release_id);
    assert_status(&run, &log, "succeeded");

    let calls = defender.requests_to("/api/machines");
    assert_eq!(calls.len(), 2, "{calls:?}");
    let isolate = &calls[0];
    assert_eq!(isolate.method, "POST");
    assert_eq!(isolate.path, format!("/api/machines/{machine}/isolate"));
    assert_eq!(
        isolate.json(),
        json!({
            "Comment": format!("tandem run {isolate_id}: ransomware alert 4711"),
            "IsolationType": "Full",
        })
    );
    let release = &calls[1];
    assert_eq!(release.method, "POST");
    assert_eq!(release.path, format!("/api/machines/{machine}/unisolate"));
    assert_eq!(
        release.json(),
        json!({"Comment": format!("tandem run {release_id}: machine reimaged")})
    );
    for call in &calls {
        assert_eq!(
            call.header("authorization"),
            Some(format!("Bearer {edr_token}").as_str())
        );
        assert_eq!(call.header("content-type"), Some("application/json"));
    }

    // A refusal by the EDR fails the run loudly, with the status.
    let (run, log) = run_mission(
        &daemon,
        "alice",
        "edr-isolate",
        json!({"machine_id": machine, "reason": "second look"}),
    );
    assert_status(&run, &log, "failed");
    let refused_id = id_of(&run);
    let error = run["error"].as_str().unwrap_or_default().to_string() + &log;
    assert!(
        error.contains(&format!(
            "EDR refused to isolate machine {machine}: HTTP 403"
        )),
        "{run:#}\n{log}"
    );

    assert_never_shown(&daemon, &[&isolate_id, &release_id, &refused_id], edr_token);
}

// Rule 3 for an API-only runbook: the Defender API and its token are internal IT's, so the
// provider isolating a device through them needs internal IT, though no host is targeted.
#[test]
fn edr_isolate_by_the_provider_waits_for_internal_it_or_goes_break_glass_with_a_review() {
    let defender = HttpStub::with_statuses(&[201]);
    let machine = "0123456789abcdef0123456789abcdef01234567";
    let (_env, daemon) = edr_daemon(&defender, "edr-token-5e2b");

    let started = start_run(
        &daemon,
        "paula",
        "edr-isolate",
        json!({"machine_id": machine, "reason": "alert 4712"}),
    );
    let id = id_of(&started);
    assert_eq!(started["status"], "awaiting_approval", "{started}");
    let reasons = started["plan"]["approvals"][0]["reasons"].to_string();
    assert_eq!(
        started["plan"]["approvals"][0]["party"], "internal",
        "{started}"
    );
    assert!(
        reasons.contains("owns API defender") && reasons.contains("owns secret edr_token"),
        "{started}"
    );
    // The provider cannot approve its own way through.
    let (status, body) = approve(&daemon, "pete", &id);
    assert_eq!(status, 403, "{body}");
    assert_eq!(get_run(&daemon, &id)["status"], "awaiting_approval");
    assert!(
        defender.requests().is_empty(),
        "isolated before internal IT approved: {:?}",
        defender.requests()
    );
    let (status, body) = approve(&daemon, "ivan", &id);
    assert_eq!(status, 200, "{body}");
    let run = wait_final(&daemon, &id, MISSION_RUN_TIMEOUT);
    let log = log_text(&daemon, &id);
    assert_status(&run, &log, "succeeded");
    let calls = defender.requests_to("/api/machines");
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].path, format!("/api/machines/{machine}/isolate"));

    // Break-glass runs at once and leaves internal IT a review to do.
    let (status, started) = daemon.post(
        "/api/v1/runs",
        &token("paula"),
        &json!({
            "runbook": "edr-isolate",
            "params": {"machine_id": machine, "reason": "alert 4713"},
            "break_glass": true,
            "reason": "lateral movement",
        }),
    );
    assert_eq!(status, 201, "{started}");
    let id = id_of(&started);
    let run = wait_final(&daemon, &id, MISSION_RUN_TIMEOUT);
    let log = log_text(&daemon, &id);
    assert_status(&run, &log, "succeeded");
    assert_eq!(defender.requests_to("/api/machines").len(), 2);
    assert_eq!(run["review"]["status"], "open", "{run}");
    assert_eq!(run["review"]["parties"], json!(["internal"]), "{run}");
}
