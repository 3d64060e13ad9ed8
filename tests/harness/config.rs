//! The standard config most tests share: parties `internal` and `provider`, five users
//! with known tokens, and an inventory the test chooses.

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::Sshd;

/// The parties of the standard config.
pub const PARTIES: [&str; 2] = ["internal", "provider"];

/// The users of the standard config: (name, party, role). Each one's token is [`token`].
pub const USERS: [(&str, &str, &str); 5] = [
    ("alice", "internal", "operator"),
    ("ivan", "internal", "approver"),
    ("paula", "provider", "operator"),
    ("pete", "provider", "approver"),
    ("audrey", "internal", "auditor"),
];

/// The bearer token of a user of the standard config: `tok-<name>`.
pub fn token(user: &str) -> String {
    format!("tok-{user}")
}

/// Hex SHA-256 of `token`, as the config's `token_sha256` holds it.
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A YAML string literal for any text (JSON strings are YAML).
fn quoted(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// One inventory entry.
#[derive(Debug, Clone)]
pub struct HostSpec {
    name: String,
    owner: String,
    tags: Vec<String>,
    ssh: Option<SshSpec>,
}

/// How an ssh host is reached.
#[derive(Debug, Clone)]
struct SshSpec {
    address: String,
    port: u16,
    user: String,
    host_key: String,
    identity_file: PathBuf,
}

impl HostSpec {
    /// A `transport: local` host: commands run on this machine.
    pub fn local(name: &str, owner: &str) -> HostSpec {
        HostSpec {
            name: name.to_string(),
            owner: owner.to_string(),
            tags: Vec::new(),
            ssh: None,
        }
    }

    /// An ssh host served by `sshd`, with its real host key pinned.
    pub fn ssh(name: &str, owner: &str, sshd: &Sshd) -> HostSpec {
        HostSpec {
            ssh: Some(SshSpec {
                address: sshd.address().to_string(),
                port: sshd.port(),
                user: sshd.user().to_string(),
                host_key: sshd.host_key_line().to_string(),
                identity_file: sshd.client_key_path().to_path_buf(),
            }),
            ..HostSpec::local(name, owner)
        }
    }

    /// Adds tags.
    pub fn tags(mut self, tags: &[&str]) -> HostSpec {
        self.tags.extend(tags.iter().map(|t| t.to_string()));
        self
    }

    /// Pins another host key (for wrong-pin tests). Only for ssh hosts.
    pub fn host_key(mut self, line: &str) -> HostSpec {
        let ssh = self.ssh.as_mut().expect("host_key() is for ssh hosts");
        ssh.host_key = line.to_string();
        self
    }

    /// Points the host at another port (e.g. one nothing listens on). Only for ssh hosts.
    pub fn port(mut self, port: u16) -> HostSpec {
        let ssh = self.ssh.as_mut().expect("port() is for ssh hosts");
        ssh.port = port;
        self
    }

    /// The inventory item, indented as a list item under `inventory:`.
    fn to_yaml(&self) -> String {
        let mut out = format!(
            "  - name: {}\n    owner: {}\n",
            quoted(&self.name),
            quoted(&self.owner)
        );
        if !self.tags.is_empty() {
            let tags: Vec<String> = self.tags.iter().map(|t| quoted(t)).collect();
            out += &format!("    tags: [{}]\n", tags.join(", "));
        }
        match &self.ssh {
            None => out += "    transport: local\n",
            Some(s) => {
                out += "    transport: ssh\n";
                out += &format!("    address: {}\n", quoted(&s.address));
                out += &format!("    port: {}\n", s.port);
                out += &format!("    user: {}\n", quoted(&s.user));
                out += &format!("    host_key: {}\n", quoted(&s.host_key));
                let identity = s.identity_file.to_string_lossy();
                out += &format!("    identity_file: {}\n", quoted(&identity));
            }
        }
        out
    }
}

/// Builds the standard `tandem.yaml`: `state_dir: state`, both parties, the five [`USERS`]
/// plus any added, the given hosts, and any extra top-level YAML (secrets, calendars, notify).
#[derive(Debug, Clone, Default)]
pub struct StandardConfig {
    hosts: Vec<HostSpec>,
    extra_users: Vec<(String, String, Vec<String>)>,
    /// `apis:` entries: (name, base_url, owner).
    apis: Vec<(String, String, String)>,
    extra_parties: Vec<String>,
    extra: String,
}

impl StandardConfig {
    /// The standard config with no hosts.
    pub fn new() -> StandardConfig {
        StandardConfig::default()
    }

    /// Adds an inventory host.
    pub fn host(mut self, host: HostSpec) -> StandardConfig {
        self.hosts.push(host);
        self
    }

    /// Adds a user whose token is [`token`]`(name)`.
    pub fn user(mut self, name: &str, party: &str, roles: &[&str]) -> StandardConfig {
        let roles = roles.iter().map(|r| r.to_string()).collect();
        self.extra_users
            .push((name.to_string(), party.to_string(), roles));
        self
    }

    /// Declares an API under `apis:` (rule 3: every `scope.http` entry lies inside one).
    pub fn api(mut self, name: &str, base_url: &str, owner: &str) -> StandardConfig {
        self.apis
            .push((name.to_string(), base_url.to_string(), owner.to_string()));
        self
    }

    /// Adds a party besides [`PARTIES`].
    pub fn party(mut self, name: &str) -> StandardConfig {
        self.extra_parties.push(name.to_string());
        self
    }

    /// Keeps the state in the PostgreSQL database at `url` instead of SQLite (SPEC §10).
    pub fn database_url(self, url: &str) -> StandardConfig {
        let line = format!("database_url: {}\n", quoted(url));
        self.extra(&line)
    }

    /// Appends top-level YAML, e.g. `"secrets:\n  api: {env: API_TOKEN, owner: internal}\n"`.
    pub fn extra(mut self, yaml: &str) -> StandardConfig {
        self.extra.push_str(yaml);
        if !self.extra.ends_with('\n') {
            self.extra.push('\n');
        }
        self
    }

    /// The config text.
    pub fn to_yaml(&self) -> String {
        let parties: Vec<&str> = PARTIES
            .iter()
            .copied()
            .chain(self.extra_parties.iter().map(String::as_str))
            .collect();
        let mut out = format!(
            "state_dir: state\nparties: [{}]\nusers:\n",
            parties.join(", ")
        );
        let standard = USERS.iter().map(|(name, party, role)| {
            (name.to_string(), party.to_string(), vec![role.to_string()])
        });
        for (name, party, roles) in standard.chain(self.extra_users.iter().cloned()) {
            let roles: Vec<String> = roles.iter().map(|r| quoted(r)).collect();
            out += &format!(
                "  - name: {}\n    party: {}\n    roles: [{}]\n    token_sha256: {}\n",
                quoted(&name),
                quoted(&party),
                roles.join(", "),
                token_sha256(&token(&name)),
            );
        }
        if self.hosts.is_empty() {
            out += "inventory: []\n";
        } else {
            out += "inventory:\n";
            for h in &self.hosts {
                out += &h.to_yaml();
            }
        }
        if !self.apis.is_empty() {
            out += "apis:\n";
            for (name, base_url, owner) in &self.apis {
                out += &format!(
                    "  {}: {{ base_url: {}, owner: {} }}\n",
                    quoted(name),
                    quoted(base_url),
                    quoted(owner)
                );
            }
        }
        out + &self.extra
    }
}

/// The standard config with these hosts and nothing else.
pub fn config_yaml(hosts: &[HostSpec]) -> String {
    hosts
        .iter()
        .cloned()
        .fold(StandardConfig::new(), StandardConfig::host)
        .to_yaml()
}
