//! `tandem.yaml`: parties, users, inventory, secret sources, notify targets, calendars.
//!
//! This is the only module that reads environment variables (secret sources), and it never
//! keeps a secret value longer than the caller asks for it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::error::{LoadError, LoadErrors};
use crate::yaml;

/// A role a user holds (SPEC §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Operator,
    Approver,
    Admin,
    Auditor,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Admin => "admin",
            Role::Auditor => "auditor",
        })
    }
}

/// How tandem reaches a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Ssh,
    Local,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    state_dir: Option<PathBuf>,
    /// A PostgreSQL URL: the store several nodes share (SPEC §10). Unset: SQLite in
    /// `state_dir`.
    database_url: Option<String>,
    /// How long a node's claim on a run lasts unless renewed (several nodes only).
    lease_timeout: Option<String>,
    listen: Option<String>,
    runbooks_dir: Option<PathBuf>,
    /// Base URL people use to reach the web pages, for links in prompts.
    public_url: Option<String>,
    parties: Vec<String>,
    #[serde(default)]
    users: Vec<User>,
    #[serde(default)]
    inventory: Vec<RawHost>,
    #[serde(default)]
    secrets: BTreeMap<String, SecretSource>,
    #[serde(default)]
    notify: Vec<NotifyTarget>,
    #[serde(default)]
    calendars: BTreeMap<String, RawCalendar>,
    #[serde(default)]
    read_grants: Vec<ReadGrant>,
    #[serde(default)]
    apis: BTreeMap<String, RawApi>,
    #[serde(default)]
    audit: RawAudit,
    #[serde(default)]
    triggers: Vec<crate::trigger::RawTrigger>,
}

/// `audit:`: checkpoint cadence and each party's witnesses (SPEC §8).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    checkpoint_records: Option<u64>,
    checkpoint_interval: Option<String>,
    #[serde(default)]
    witnesses: Vec<RawWitness>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    base_url: String,
    #[serde(default)]
    owner: String,
}

/// An HTTP API runbooks may call (rule 3): every `scope.http` entry must fall inside one,
/// and a run calling it needs its owner's approval when started by another party.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Api {
    /// The name in `apis:`, shown in approval reasons (`owns API defender`).
    pub name: String,
    /// http or https, with a host, no credentials, query or fragment.
    pub base_url: url::Url,
    /// The party that owns the API (usually, whose token it is).
    pub owner: String,
}

impl Api {
    /// Whether `url` lies inside this API: same scheme, host and port, and a path at or
    /// below the base path by whole segments.
    pub fn contains(&self, url: &url::Url) -> bool {
        crate::policy::scope::url_within(url, &self.base_url)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWitness {
    party: String,
    file: Option<PathBuf>,
    url: Option<String>,
}

/// How the daemon anchors its audit log: a signed checkpoint every `checkpoint_records`
/// records or `checkpoint_interval`, whichever comes first, and on shutdown, handed to
/// every witness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    pub checkpoint_records: u64,
    pub checkpoint_interval: std::time::Duration,
    pub witnesses: Vec<Witness>,
}

impl AuditConfig {
    pub const DEFAULT_RECORDS: u64 = 1000;
    pub const DEFAULT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(600);
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            checkpoint_records: AuditConfig::DEFAULT_RECORDS,
            checkpoint_interval: AuditConfig::DEFAULT_INTERVAL,
            witnesses: Vec::new(),
        }
    }
}

/// A place a party keeps the checkpoints it is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witness {
    pub party: String,
    pub target: WitnessTarget,
}

/// A witness is a file (one JSON line appended per checkpoint) or an HTTP receiver (one
/// JSON POST per checkpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WitnessTarget {
    File(PathBuf),
    Url(String),
}

/// Rule 10's exception: `party` may read the runs of `reads` (started by it or touching what
/// it owns), as if they concerned it. Reading never lets it decide, cancel or freeze.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadGrant {
    pub party: String,
    pub reads: String,
}

/// A user of tandem: a person or an automation acting for one party.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    pub party: String,
    pub roles: Vec<Role>,
    /// Hex SHA-256 of the user's bearer token; the token itself is never stored.
    pub token_sha256: String,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("party", &self.party)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

impl User {
    /// Whether the user holds `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    name: String,
    #[serde(default = "default_address")]
    address: String,
    #[serde(default = "default_port")]
    port: u16,
    user: Option<String>,
    host_key: Option<String>,
    identity_file: Option<PathBuf>,
    identity_secret: Option<String>,
    owner: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    transport: Transport,
}

fn default_address() -> String {
    "127.0.0.1".to_string()
}

fn default_port() -> u16 {
    22
}

/// A pinned SSH host key in OpenSSH `known_hosts` form: key type and public key blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostKey {
    /// e.g. `ssh-ed25519`.
    pub key_type: String,
    /// Base64 of the public key blob, as in `known_hosts`.
    pub base64: String,
    #[serde(skip)]
    pub blob: Vec<u8>,
}

impl HostKey {
    /// Parses `TYPE BASE64 [comment]` or a whole `known_hosts` line `HOST TYPE BASE64 [comment]`.
    pub fn parse(text: &str) -> Result<HostKey, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let start = match words.first() {
            Some(w) if is_key_type(w) => 0,
            Some(_) if words.get(1).is_some_and(|w| is_key_type(w)) => 1,
            _ => {
                return Err(
                    "expected `TYPE BASE64` as in known_hosts (e.g. `ssh-ed25519 AAAAC3Nz…`)"
                        .to_string(),
                )
            }
        };
        let key_type = words[start].to_string();
        let b64 = words
            .get(start + 1)
            .ok_or_else(|| format!("`{key_type}` is missing its base64 key"))?;
        let blob = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("the key is not valid base64: {e}"))?;
        // The blob starts with its own type as an SSH string; a mismatch means a pasted key
        // of another type or a truncated line.
        let embedded = blob
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .and_then(|n| blob.get(4..4 + n));
        if embedded != Some(key_type.as_bytes()) {
            return Err(format!("the key blob is not a `{key_type}` key"));
        }
        Ok(HostKey {
            key_type,
            base64: (*b64).to_string(),
            blob,
        })
    }

    /// `TYPE BASE64`, the form used in plans and digests.
    pub fn to_known_hosts(&self) -> String {
        format!("{} {}", self.key_type, self.base64)
    }
}

/// Checks an API's `base_url`: http or https with a host, no credentials, query or fragment.
fn parse_api_base(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("`{text}` must be an http or https URL with a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("an API base URL must not carry credentials (use a secret)".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("an API base URL has no query or fragment".into());
    }
    Ok(url)
}

fn is_key_type(word: &str) -> bool {
    word.starts_with("ssh-") || word.starts_with("ecdsa-sha2-") || word.starts_with("sk-")
}

/// A host in the inventory.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    pub host_key: Option<HostKey>,
    pub identity: Option<Identity>,
    pub owner: String,
    pub tags: Vec<String>,
    pub transport: Transport,
}

/// Where the SSH private key for a host comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    File(PathBuf),
    Secret(String),
}

/// Where a secret's value is read from at the moment it is used.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    pub env: Option<String>,
    pub file: Option<PathBuf>,
    /// The party that owns the secret (rule 3); required, checked in [`Config::load`].
    #[serde(default)]
    pub owner: String,
}

/// A secret value. Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    /// The value itself, for the one place that hands it to a script or a connection.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
impl SecretValue {
    /// A value for unit tests.
    pub(crate) fn for_test(value: &str) -> SecretValue {
        SecretValue(value.to_string())
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Which kind of message a notify target expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyKind {
    /// tandem's own JSON document, POSTed.
    Webhook,
    /// A Slack incoming webhook: Block Kit with a `text` fallback.
    Slack,
    /// A Microsoft Teams Workflows webhook: an Adaptive Card in a `message`.
    Teams,
    /// A Microsoft 365 Connector (being retired by Microsoft): a `MessageCard`.
    TeamsLegacy,
    /// Mail over SMTP (`smtp`, `from`, `to`).
    Email,
}

/// How an email target's SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which the server must offer (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: allowed only for a server on the loopback interface.
    None,
}

impl SmtpTls {
    /// The usual port for this kind of connection.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        }
    }
}

/// `notify[].smtp`: the mail server of an email target.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    pub host: String,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: SmtpTls,
    /// The login name; with `password_secret`.
    #[serde(default)]
    pub username: Option<String>,
    /// The name of the secret (in `secrets:`) holding the password.
    #[serde(default)]
    pub password_secret: Option<String>,
}

impl SmtpSettings {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or_else(|| self.tls.default_port())
    }
}

/// Whether `host` names the loopback interface, where plain SMTP is allowed.
pub fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A place prompts and notices are sent to. Empty `events`, `parties` or `runbooks` mean
/// "all".
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyTarget {
    pub name: String,
    pub kind: NotifyKind,
    /// The webhook URL (every kind but `email`).
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub events: Vec<crate::notify::NoticeEvent>,
    #[serde(default)]
    pub parties: Vec<String>,
    /// Only notices about these runbooks.
    #[serde(default)]
    pub runbooks: Vec<String>,
    /// `kind: email`: the mail server.
    #[serde(default)]
    pub smtp: Option<SmtpSettings>,
    /// `kind: email`: the sender address.
    #[serde(default)]
    pub from: Option<String>,
    /// `kind: email`: the recipients.
    #[serde(default)]
    pub to: Vec<String>,
}

/// `calendars.NAME`: inline periods and/or an `.ics` file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCalendar {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    periods: Vec<Period>,
    /// An iCalendar file, relative to the config file.
    #[serde(default)]
    ics: Option<PathBuf>,
    /// The zone of the file's all-day events and floating times (default UTC).
    #[serde(default)]
    timezone: Option<String>,
}

/// A named set of freeze or blackout periods: inline ones and those of an `.ics` file.
#[derive(Debug, Clone)]
pub struct Calendar {
    pub description: Option<String>,
    pub periods: Vec<Period>,
    pub ics: Option<IcsFile>,
}

/// A calendar's `.ics` file as last read successfully.
#[derive(Debug, Clone)]
pub struct IcsFile {
    /// The file, resolved against the config file's folder.
    pub path: PathBuf,
    /// SHA-256 of the bytes read, recorded in `config_loaded`.
    pub sha256: String,
    pub events: std::sync::Arc<crate::scheduler::ics::IcsCalendar>,
}

/// A calendar file that could not be read at a reload, whose last good version stays in
/// force.
#[derive(Debug)]
pub struct KeptCalendar {
    pub calendar: String,
    pub error: LoadError,
}

/// One blackout period, RFC 3339 instants.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Period {
    pub from: chrono::DateTime<chrono::FixedOffset>,
    pub to: chrono::DateTime<chrono::FixedOffset>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// The validated config.
#[derive(Debug, Clone)]
pub struct Config {
    /// The config file itself.
    pub path: PathBuf,
    pub state_dir: PathBuf,
    /// The PostgreSQL store (`database_url`, or `TANDEM_DATABASE_URL`, which wins); `None`:
    /// SQLite in `state_dir`. A secret: the URL may carry a password.
    pub database_url: Option<SecretValue>,
    /// How long a node's lease on a run it executes lasts unless renewed; a survivor takes
    /// the run over (marks it `interrupted`) this long after its node stopped (SPEC §10).
    pub lease_timeout: std::time::Duration,
    pub listen: String,
    pub runbooks_dir: PathBuf,
    pub public_url: Option<String>,
    pub parties: Vec<String>,
    pub users: Vec<User>,
    pub inventory: Vec<Host>,
    pub secrets: BTreeMap<String, SecretSource>,
    pub notify: Vec<NotifyTarget>,
    pub calendars: BTreeMap<String, Calendar>,
    /// Parties that may read another party's runs (rule 10).
    pub read_grants: Vec<ReadGrant>,
    /// The HTTP APIs runbooks may call, by name, each with its owner (rule 3).
    pub apis: BTreeMap<String, Api>,
    /// Checkpoints and witnesses of the audit log.
    pub audit: AuditConfig,
    /// Alerts that start runs (SPEC §9).
    pub triggers: Vec<crate::trigger::Trigger>,
    /// SHA-256 of the config file's bytes, recorded in `config_loaded`.
    pub sha256: String,
}

/// What is wrong with one `notify:` entry: (field suffix, offending text, message).
fn notify_target_problems(
    n: &NotifyTarget,
    secrets: &BTreeMap<String, SecretSource>,
) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut bad = |field: &str, name: &str, m: String| {
        out.push((field.to_string(), name.to_string(), m));
    };
    if n.kind != NotifyKind::Email {
        if url::Url::parse(&n.url).is_err() {
            bad(".url", &n.url, "not a valid URL".into());
        }
        for (field, set) in [
            (".smtp", n.smtp.is_some()),
            (".from", n.from.is_some()),
            (".to", !n.to.is_empty()),
        ] {
            if set {
                bad(
                    field,
                    &n.name,
                    "only `kind: email` takes smtp, from and to".into(),
                );
            }
        }
        return out;
    }
    if !n.url.is_empty() {
        bad(
            ".url",
            &n.url,
            "`kind: email` takes smtp, from and to, not url".into(),
        );
    }
    match &n.smtp {
        None => bad(
            ".smtp",
            &n.name,
            "`kind: email` needs `smtp: {host, ...}`".into(),
        ),
        Some(smtp) => {
            if smtp.host.trim().is_empty() {
                bad(".smtp.host", &smtp.host, "empty host".into());
            }
            if smtp.tls == SmtpTls::None && !is_loopback_host(&smtp.host) {
                bad(
                    ".smtp.tls",
                    &smtp.host,
                    format!("`tls: none` sends the password and the mail in the clear; it is allowed only for a server on localhost, not `{}` (use starttls or tls)", smtp.host),
                );
            }
            match (&smtp.username, &smtp.password_secret) {
                (Some(_), None) => bad(
                    ".smtp.password_secret",
                    &n.name,
                    "a username needs `password_secret` (the name of a secret)".into(),
                ),
                (None, Some(p)) => bad(
                    ".smtp.username",
                    p,
                    "`password_secret` needs a username".into(),
                ),
                (_, Some(p)) if !secrets.contains_key(p) => {
                    bad(".smtp.password_secret", p, format!("unknown secret `{p}`"))
                }
                _ => {}
            }
        }
    }
    match &n.from {
        None => bad(
            ".from",
            &n.name,
            "`kind: email` needs a `from` address".into(),
        ),
        Some(f) => {
            if f.parse::<lettre::message::Mailbox>().is_err() {
                bad(".from", f, format!("`{f}` is not an email address"));
            }
        }
    }
    if n.to.is_empty() {
        bad(
            ".to",
            &n.name,
            "`kind: email` needs at least one `to` address".into(),
        );
    }
    for (j, t) in n.to.iter().enumerate() {
        if t.parse::<lettre::message::Mailbox>().is_err() {
            bad(
                &format!(".to[{j}]"),
                t,
                format!("`{t}` is not an email address"),
            );
        }
    }
    out
}

/// Validates `audit:`, reporting each problem by field path through `error`.
fn audit_config(
    raw: RawAudit,
    base: &Path,
    parties: &BTreeSet<&str>,
    error: &mut dyn FnMut(String, &str, String),
) -> AuditConfig {
    let mut out = AuditConfig::default();
    match raw.checkpoint_records {
        Some(0) => error(
            "audit.checkpoint_records".into(),
            "checkpoint_records",
            "must be at least 1".into(),
        ),
        Some(n) => out.checkpoint_records = n,
        None => {}
    }
    if let Some(text) = &raw.checkpoint_interval {
        match humantime::parse_duration(text) {
            Ok(d) if d >= std::time::Duration::from_secs(1) => out.checkpoint_interval = d,
            Ok(_) => error(
                "audit.checkpoint_interval".into(),
                "checkpoint_interval",
                "must be at least 1s".into(),
            ),
            Err(e) => error(
                "audit.checkpoint_interval".into(),
                "checkpoint_interval",
                format!("not a duration like `10m`: {e}"),
            ),
        }
    }
    for (i, w) in raw.witnesses.into_iter().enumerate() {
        let field = format!("audit.witnesses[{i}]");
        if !parties.contains(w.party.as_str()) {
            error(
                format!("{field}.party"),
                &w.party,
                format!("unknown party `{}`", w.party),
            );
        }
        let target = match (w.file, w.url) {
            (Some(f), None) => WitnessTarget::File(base.join(f)),
            (None, Some(u)) => {
                match url::Url::parse(&u) {
                    Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
                    _ => error(format!("{field}.url"), &u, "not an http(s) URL".into()),
                }
                WitnessTarget::Url(u)
            }
            _ => {
                error(
                    field.clone(),
                    "witnesses",
                    "give exactly one of `file` or `url`".into(),
                );
                continue;
            }
        };
        out.witnesses.push(Witness {
            party: w.party,
            target,
        });
    }
    out
}

/// The environment variable that names the PostgreSQL store, over `database_url`.
pub const DATABASE_URL_ENV: &str = "TANDEM_DATABASE_URL";

impl Config {
    /// Reads and validates the config at `path`. Relative paths inside it are resolved
    /// against the config file's folder.
    pub fn load(path: &Path) -> Result<Config, LoadErrors> {
        Config::load_with(path, None).map(|(c, _)| c)
    }

    /// Loads the config again while `previous` is in force: a calendar file that cannot be
    /// read or parsed keeps the version `previous` has of it (same calendar, same file), and
    /// is returned beside the config so the caller can audit it. A calendar with no good
    /// version to keep is an error, as at the first load.
    pub fn reload(
        path: &Path,
        previous: &Config,
    ) -> Result<(Config, Vec<KeptCalendar>), LoadErrors> {
        Config::load_with(path, Some(previous))
    }

    /// The calendars' `.ics` files, for the reload watcher.
    pub fn calendar_files(&self) -> Vec<PathBuf> {
        self.calendars
            .values()
            .filter_map(|c| c.ics.as_ref().map(|f| f.path.clone()))
            .collect()
    }

    fn load_with(
        path: &Path,
        previous: Option<&Config>,
    ) -> Result<(Config, Vec<KeptCalendar>), LoadErrors> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| LoadError::at(path, "", format!("cannot read config: {e}")))?;
        let raw: RawConfig = yaml::parse(path, &text)?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut errors = Vec::new();
        // Locate by field path; fall back to the first line showing the offending text.
        let err = |field: String, needle: &str, message: String| {
            let mut e = yaml::error_at(path, &text, &field, message);
            e.line = yaml::refine_line(&text, e.line, needle);
            e
        };

        let database_url = std::env::var(DATABASE_URL_ENV)
            .ok()
            .filter(|u| !u.is_empty())
            .or_else(|| raw.database_url.clone());
        if let Some(url) = &database_url {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                // The URL itself is not repeated: it may carry a password.
                errors.push(err(
                    "database_url".into(),
                    "database_url",
                    format!("must be a postgres:// URL (from the config or {DATABASE_URL_ENV})"),
                ));
            }
        }
        let mut lease_timeout = crate::store::DEFAULT_LEASE;
        if let Some(text) = &raw.lease_timeout {
            match humantime::parse_duration(text) {
                Ok(d) if d >= std::time::Duration::from_secs(1) => lease_timeout = d,
                Ok(_) => errors.push(err(
                    "lease_timeout".into(),
                    "lease_timeout",
                    "must be at least 1s".into(),
                )),
                Err(e) => errors.push(err(
                    "lease_timeout".into(),
                    "lease_timeout",
                    format!("not a duration like `15s`: {e}"),
                )),
            }
        }

        let parties: BTreeSet<&str> = raw.parties.iter().map(String::as_str).collect();
        if raw.parties.is_empty() {
            errors.push(err(
                "parties".into(),
                "parties",
                "at least one party is required".into(),
            ));
        }
        if parties.len() != raw.parties.len() {
            errors.push(err(
                "parties".into(),
                "parties",
                "party names must be unique".into(),
            ));
        }
        let mut names = BTreeSet::new();
        for (i, u) in raw.users.iter().enumerate() {
            let field = format!("users[{i}]");
            if u.name == "system" || !names.insert(u.name.as_str()) {
                errors.push(err(
                    format!("{field}.name"),
                    &u.name,
                    format!("user name `{}` is reserved or used twice", u.name),
                ));
            }
            if !parties.contains(u.party.as_str()) {
                errors.push(err(
                    format!("{field}.party"),
                    &u.party,
                    format!(
                        "unknown party `{}` (parties: {})",
                        u.party,
                        raw.parties.join(", ")
                    ),
                ));
            }
            if u.token_sha256.len() != 64 || hex::decode(&u.token_sha256).is_err() {
                errors.push(err(
                    format!("{field}.token_sha256"),
                    "token_sha256",
                    "must be 64 hex digits (see `tandem token new USER`)".into(),
                ));
            }
        }
        // Two users with one token: whoever presents it is taken for one of them, so the
        // audit log and every rule would name the wrong person.
        let mut tokens: BTreeMap<String, &str> = BTreeMap::new();
        for (i, u) in raw.users.iter().enumerate() {
            let hash = u.token_sha256.to_ascii_lowercase();
            if let Some(first) = tokens.insert(hash, &u.name) {
                errors.push(err(
                    format!("users[{i}].token_sha256"),
                    &u.token_sha256,
                    format!(
                        "user `{}` has the same token as `{first}`; give each user its own \
                         (see `tandem token new USER`)",
                        u.name
                    ),
                ));
            }
        }

        let mut inventory = Vec::new();
        let mut host_names = BTreeSet::new();
        for (i, h) in raw.inventory.into_iter().enumerate() {
            let field = format!("inventory[{i}]");
            if !host_names.insert(h.name.clone()) {
                errors.push(err(
                    format!("{field}.name"),
                    &h.name,
                    format!("host `{}` is listed twice", h.name),
                ));
            }
            if !parties.contains(h.owner.as_str()) {
                errors.push(err(
                    format!("{field}.owner"),
                    &h.owner,
                    format!("unknown party `{}`", h.owner),
                ));
            }
            if h.identity_file.is_some() && h.identity_secret.is_some() {
                errors.push(err(
                    format!("{field}.identity_secret"),
                    "identity_secret",
                    "give identity_file or identity_secret, not both".into(),
                ));
            }
            if let Some(s) = &h.identity_secret {
                if !raw.secrets.contains_key(s) {
                    errors.push(err(
                        format!("{field}.identity_secret"),
                        s,
                        format!("unknown secret `{s}`"),
                    ));
                }
            }
            let host_key = match &h.host_key {
                Some(k) => match HostKey::parse(k) {
                    Ok(k) => Some(k),
                    Err(m) => {
                        errors.push(err(format!("{field}.host_key"), "host_key", m));
                        None
                    }
                },
                None => None,
            };
            let identity = match (h.identity_file, h.identity_secret) {
                (Some(f), _) => Some(Identity::File(base.join(f))),
                (None, Some(s)) => Some(Identity::Secret(s)),
                (None, None) => None,
            };
            if h.transport == Transport::Ssh {
                // No trust on first use: an SSH host without a pinned key is a config error.
                if h.host_key.is_none() {
                    errors.push(err(
                        format!("{field}.host_key"),
                        &h.name,
                        "an ssh host needs a pinned host_key (ssh-keyscan HOST, then check it)"
                            .into(),
                    ));
                }
                if h.user.is_none() {
                    errors.push(err(
                        format!("{field}.user"),
                        &h.name,
                        "an ssh host needs a user".into(),
                    ));
                }
                if identity.is_none() {
                    errors.push(err(
                        format!("{field}.identity_file"),
                        &h.name,
                        "an ssh host needs identity_file or identity_secret".into(),
                    ));
                }
            }
            inventory.push(Host {
                name: h.name,
                address: h.address,
                port: h.port,
                user: h.user.unwrap_or_else(|| "root".to_string()),
                host_key,
                identity,
                owner: h.owner,
                tags: h.tags,
                transport: h.transport,
            });
        }

        // Rule 3: every secret and API has an owner, a declared party.
        let check_owner = |errors: &mut Vec<LoadError>, field: &str, name: &str, owner: &str| {
            if owner.is_empty() {
                errors.push(err(
                    field.to_string(),
                    name,
                    format!(
                        "`{name}` needs an `owner`: the party whose approval a run using it needs"
                    ),
                ));
            } else if !parties.contains(owner) {
                errors.push(err(
                    field.to_string(),
                    owner,
                    format!(
                        "unknown party `{owner}` (parties: {})",
                        raw.parties.join(", ")
                    ),
                ));
            }
        };
        for (name, s) in &raw.secrets {
            if s.env.is_some() == s.file.is_some() {
                errors.push(err(
                    format!("secrets.{name}"),
                    name,
                    "give exactly one of `env` or `file`".into(),
                ));
            }
            check_owner(
                &mut errors,
                &format!("secrets.{name}.owner"),
                name,
                &s.owner,
            );
        }
        let mut apis = BTreeMap::new();
        for (name, a) in &raw.apis {
            let field = format!("apis.{name}");
            check_owner(&mut errors, &format!("{field}.owner"), name, &a.owner);
            match parse_api_base(&a.base_url) {
                Ok(base_url) => {
                    apis.insert(
                        name.clone(),
                        Api {
                            name: name.clone(),
                            base_url,
                            owner: a.owner.clone(),
                        },
                    );
                }
                Err(m) => errors.push(err(format!("{field}.base_url"), &a.base_url, m)),
            }
        }
        for (i, n) in raw.notify.iter().enumerate() {
            for (field, name, m) in notify_target_problems(n, &raw.secrets) {
                errors.push(err(format!("notify[{i}]{field}"), &name, m));
            }
            for p in &n.parties {
                if !parties.contains(p.as_str()) {
                    errors.push(err(
                        format!("notify[{i}].parties"),
                        p,
                        format!("unknown party `{p}`"),
                    ));
                }
            }
        }
        let mut calendars = BTreeMap::new();
        let mut kept = Vec::new();
        for (name, c) in raw.calendars {
            for (i, p) in c.periods.iter().enumerate() {
                if p.to <= p.from {
                    errors.push(err(
                        format!("calendars.{name}.periods[{i}]"),
                        &name,
                        "`to` must be after `from`".into(),
                    ));
                }
            }
            let zone = match &c.timezone {
                Some(t) => t.parse::<chrono_tz::Tz>().unwrap_or_else(|_| {
                    errors.push(err(
                        format!("calendars.{name}.timezone"),
                        t,
                        format!("`{t}` is not an IANA time zone"),
                    ));
                    chrono_tz::Tz::UTC
                }),
                None => chrono_tz::Tz::UTC,
            };
            let ics = match &c.ics {
                None => None,
                Some(rel) => {
                    let file = base.join(rel);
                    match read_ics(&name, &file, zone) {
                        Ok(f) => Some(f),
                        Err(error) => {
                            let last_good = previous
                                .and_then(|p| p.calendars.get(&name))
                                .and_then(|c| c.ics.clone())
                                .filter(|f| f.path == file);
                            match last_good {
                                Some(f) => {
                                    kept.push(KeptCalendar {
                                        calendar: name.clone(),
                                        error,
                                    });
                                    Some(f)
                                }
                                None => {
                                    errors.push(error);
                                    None
                                }
                            }
                        }
                    }
                }
            };
            calendars.insert(
                name,
                Calendar {
                    description: c.description,
                    periods: c.periods,
                    ics,
                },
            );
        }
        for (i, g) in raw.read_grants.iter().enumerate() {
            for (field, p) in [("party", &g.party), ("reads", &g.reads)] {
                if !parties.contains(p.as_str()) {
                    errors.push(err(
                        format!("read_grants[{i}].{field}"),
                        p,
                        format!("unknown party `{p}`"),
                    ));
                }
            }
        }
        let audit = audit_config(raw.audit, base, &parties, &mut |f, n, m| {
            errors.push(err(f, n, m))
        });
        let triggers =
            crate::trigger::validate(raw.triggers, &parties, &raw.secrets, &mut |f, n, m| {
                errors.push(err(f, n, m))
            });
        if !errors.is_empty() {
            return Err(LoadErrors(errors));
        }

        let secrets = raw
            .secrets
            .into_iter()
            .map(|(k, mut v)| {
                v.file = v.file.map(|f| base.join(f));
                (k, v)
            })
            .collect();
        let config = Config {
            path: path.to_path_buf(),
            state_dir: base.join(raw.state_dir.unwrap_or_else(|| PathBuf::from(".tandem"))),
            database_url: database_url.map(SecretValue),
            lease_timeout,
            listen: raw.listen.unwrap_or_else(|| "127.0.0.1:8080".to_string()),
            runbooks_dir: base.join(
                raw.runbooks_dir
                    .unwrap_or_else(|| PathBuf::from("runbooks")),
            ),
            public_url: raw.public_url,
            parties: raw.parties,
            users: raw.users,
            inventory,
            secrets,
            notify: raw.notify,
            calendars,
            read_grants: raw.read_grants,
            apis,
            audit,
            triggers,
            sha256: crate::audit::sha256_hex(text.as_bytes()),
        };
        Ok((config, kept))
    }

    /// The declared APIs that contain `url` (rule 3: their owners own a call to it).
    pub fn apis_containing<'a>(&'a self, url: &'a url::Url) -> impl Iterator<Item = &'a Api> + 'a {
        self.apis.values().filter(move |a| a.contains(url))
    }

    /// The user with this name.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    /// The trigger with this name.
    pub fn trigger(&self, name: &str) -> Option<&crate::trigger::Trigger> {
        self.triggers.iter().find(|t| t.name == name)
    }

    /// The host with this name.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.inventory.iter().find(|h| h.name == name)
    }

    /// The user whose token hashes to `token_sha256`, compared in constant time against
    /// every user so the time taken says nothing about which prefix matched.
    pub fn user_by_token(&self, token: &str) -> Option<&User> {
        use subtle::ConstantTimeEq;
        let presented = crate::audit::sha256_hex(token.as_bytes()).into_bytes();
        let mut found = None;
        for u in &self.users {
            let stored = u.token_sha256.to_ascii_lowercase().into_bytes();
            if bool::from(stored.ct_eq(&presented)) {
                found = Some(u);
            }
        }
        found
    }

    /// The environment variables secrets are read from: kept away from local commands.
    pub fn secret_env_vars(&self) -> Vec<String> {
        self.secrets
            .values()
            .filter_map(|s| s.env.clone())
            .collect()
    }

    /// Reads a secret's current value from its source. The error names the secret and its
    /// source, never a value.
    pub fn read_secret(&self, name: &str) -> Result<SecretValue, String> {
        let source = self
            .secrets
            .get(name)
            .ok_or_else(|| format!("unknown secret `{name}`"))?;
        if let Some(var) = &source.env {
            return std::env::var(var)
                .map(SecretValue)
                .map_err(|_| format!("secret `{name}`: environment variable {var} is not set"));
        }
        if let Some(file) = &source.file {
            return std::fs::read_to_string(file)
                .map(|s| SecretValue(s.trim_end_matches(['\n', '\r']).to_string()))
                .map_err(|e| {
                    format!(
                        "secret `{name}`: cannot read {}: {}",
                        file.display(),
                        e.kind()
                    )
                });
        }
        Err(format!("secret `{name}` has no source"))
    }
}

/// Reads and parses calendar `name`'s `.ics` file; the error names the file and its line.
fn read_ics(name: &str, file: &Path, zone: chrono_tz::Tz) -> Result<IcsFile, LoadError> {
    let at = |line: Option<usize>, message: String| LoadError {
        file: file.to_path_buf(),
        line,
        column: None,
        field: format!("calendars.{name}.ics"),
        message,
    };
    let bytes = std::fs::read(file)
        .map_err(|e| at(None, format!("cannot read the calendar file: {}", e.kind())))?;
    let text = String::from_utf8_lossy(&bytes);
    let events = crate::scheduler::ics::IcsCalendar::parse(&text, zone, chrono::Utc::now())
        .map_err(|e| at(e.line, e.message))?;
    Ok(IcsFile {
        path: file.to_path_buf(),
        sha256: crate::audit::sha256_hex(&bytes),
        events: std::sync::Arc::new(events),
    })
}

#[cfg(test)]
mod audit_config_tests {
    use super::*;

    fn load(extra: &str) -> Result<Config, LoadErrors> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tandem.yaml");
        std::fs::write(&path, format!("parties: [internal, provider]\n{extra}")).unwrap();
        Config::load(&path)
    }

    #[test]
    fn audit_defaults_and_witnesses() {
        let c = load("").unwrap();
        assert_eq!(c.audit, AuditConfig::default());
        assert_eq!(c.audit.checkpoint_records, 1000);
        let c = load(
            "audit:\n  checkpoint_records: 5\n  checkpoint_interval: 2m\n  witnesses:\n    - { party: internal, file: cps.jsonl }\n    - { party: provider, url: \"https://w.example/cp\" }\n",
        )
        .unwrap();
        assert_eq!(c.audit.checkpoint_records, 5);
        assert_eq!(
            c.audit.checkpoint_interval,
            std::time::Duration::from_secs(120)
        );
        assert_eq!(c.audit.witnesses.len(), 2);
        assert!(
            matches!(&c.audit.witnesses[0].target, WitnessTarget::File(p) if p.is_absolute() || p.ends_with("cps.jsonl"))
        );
    }

    #[test]
    fn audit_mistakes_are_named_by_field_path() {
        let e = load(
            "audit:\n  checkpoint_records: 0\n  checkpoint_interval: soon\n  witnesses:\n    - { party: nobody, file: a }\n    - { party: internal }\n    - { party: provider, url: \"ftp://x\" }\n",
        )
        .unwrap_err()
        .to_string();
        for want in [
            "audit.checkpoint_records: must be at least 1",
            "audit.checkpoint_interval: not a duration",
            "audit.witnesses[0].party: unknown party `nobody`",
            "audit.witnesses[1]: give exactly one of `file` or `url`",
            "audit.witnesses[2].url: not an http(s) URL",
        ] {
            assert!(e.contains(want), "missing {want:?} in:\n{e}");
        }
    }

    #[test]
    fn notify_events_must_be_events_tandem_sends() {
        let target = |events: &str| {
            format!("notify:\n  - {{ name: hook, kind: webhook, url: \"https://h.example/x\", events: {events} }}\n")
        };
        load(&target("[approval_requested, review_requested]")).unwrap();
        let e = load(&target("[approval_requested, gate_requested]"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("notify[0].events") && e.contains("gate_requested"),
            "{e}"
        );
    }
}

#[cfg(test)]
mod notify_config_tests {
    use super::*;

    fn load(extra: &str) -> Result<Config, LoadErrors> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tandem.yaml");
        std::fs::write(
            &path,
            format!("parties: [internal, provider]\nsecrets:\n  smtp_pw: {{ env: SMTP_PW, owner: internal }}\n{extra}"),
        )
        .unwrap();
        Config::load(&path)
    }

    #[test]
    fn an_email_target_with_starttls_by_default() {
        let c = load(
            "notify:\n  - name: mail\n    kind: email\n    smtp: { host: mail.example.org, username: tandem, password_secret: smtp_pw }\n    from: tandem@example.org\n    to: [it@example.org]\n    events: [run_failed, approval_requested]\n    runbooks: [patch]\n  - name: old\n    kind: teams_legacy\n    url: \"https://example.org/hook\"\n",
        )
        .unwrap();
        let smtp = c.notify[0].smtp.as_ref().unwrap();
        assert_eq!(smtp.tls, SmtpTls::Starttls);
        assert_eq!(smtp.port(), 587);
        assert_eq!(c.notify[0].runbooks, ["patch"]);
        assert_eq!(c.notify[1].kind, NotifyKind::TeamsLegacy);
    }

    #[test]
    fn email_mistakes_are_named_by_field_path() {
        let e = load(
            "notify:\n  - name: mail\n    kind: email\n    url: \"https://x\"\n    smtp: { host: mail.example.org, tls: none, username: u, password_secret: nope }\n    from: not an address\n    to: []\n  - name: hook\n    kind: webhook\n    url: \"https://x\"\n    to: [a@b.c]\n",
        )
        .unwrap_err()
        .to_string();
        for want in [
            "notify[0].url: `kind: email` takes smtp, from and to, not url",
            "notify[0].smtp.tls: `tls: none` sends the password and the mail in the clear",
            "notify[0].smtp.password_secret: unknown secret `nope`",
            "notify[0].from: `not an address` is not an email address",
            "notify[0].to: `kind: email` needs at least one `to` address",
            "notify[1].to: only `kind: email` takes smtp, from and to",
        ] {
            assert!(e.contains(want), "missing {want:?} in:\n{e}");
        }
        let e = load(
            "notify:\n  - name: typo\n    kind: webhook\n    url: \"https://x\"\n    events: [run_exploded]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("run_exploded"), "{e}");
    }

    #[test]
    fn plain_smtp_is_for_localhost_only() {
        assert!(is_loopback_host("localhost"));
        assert!(is_loopback_host("127.0.0.1"));
        assert!(is_loopback_host("[::1]"));
        assert!(!is_loopback_host("mail.example.org"));
        assert!(!is_loopback_host("10.0.0.1"));
    }
}
