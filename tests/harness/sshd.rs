//! A real OpenSSH server on 127.0.0.1 (or on an address inside a network namespace, see
//! [`Sshd::start_in`]), with its own host key, client key and config in a temp folder.

use std::fs::File;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::env::kill;
use super::{poll, wait_until};

const SSHD: &str = "/usr/sbin/sshd";

/// How long sshd may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Attempts at a free port: another process may take the one picked before sshd binds it.
const PORT_ATTEMPTS: usize = 5;

/// A running sshd, killed on drop.
pub struct Sshd {
    dir: TempDir,
    child: Child,
    address: IpAddr,
    port: u16,
    host_key_line: String,
    user: String,
    /// Bytes of the log written before the test could connect (startup and the harness's
    /// readiness probe); [`Sshd::log`] skips them.
    log_start: usize,
}

impl Sshd {
    /// Starts sshd on 127.0.0.1 and waits until it answers with its SSH banner.
    pub fn start() -> Sshd {
        Sshd::start_at(None, IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// Starts sshd inside network namespace `netns` (`ip netns exec NETNS sshd …`),
    /// listening on `address`, which must be reachable from the test's own namespace; waits
    /// until it answers with its SSH banner. Commands run as the test user on this machine's
    /// filesystem, with the namespace's network.
    pub fn start_in(netns: &str, address: IpAddr) -> Sshd {
        Sshd::start_at(Some(netns), address)
    }

    fn start_at(netns: Option<&str>, address: IpAddr) -> Sshd {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: the SSH tests need a real OpenSSH server, which the test \
             command installs (apt-get install openssh-server)"
        );
        let dir = tempfile::Builder::new()
            .prefix("tandem-sshd-")
            .tempdir()
            .expect("create temp dir");
        let host_key_line = keygen(&dir.path().join("host_ed25519"));
        let client_key_line = keygen(&dir.path().join("client_ed25519"));
        std::fs::write(
            dir.path().join("authorized_keys"),
            format!("{client_key_line}\n"),
        )
        .expect("write authorized_keys");
        ensure_privsep_dir();

        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            match spawn_ready(dir.path(), SocketAddr::new(address, port), netns) {
                Ok((child, log_start)) => {
                    return Sshd {
                        dir,
                        child,
                        address,
                        port,
                        host_key_line,
                        user: current_user(),
                        log_start,
                    }
                }
                Err(log) if is_port_taken(&log) => continue,
                Err(log) => panic!("sshd did not start:\n{log}"),
            }
        }
        panic!("sshd found no free port in {PORT_ATTEMPTS} attempts");
    }

    /// The address sshd listens on: 127.0.0.1 unless started with [`Sshd::start_in`].
    pub fn address(&self) -> IpAddr {
        self.address
    }

    /// The port sshd listens on, at [`Sshd::address`].
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host key as pinned in `known_hosts`: `ssh-ed25519 AAAA…`, without comment.
    pub fn host_key_line(&self) -> &str {
        &self.host_key_line
    }

    /// The private key that `authorized_keys` admits.
    pub fn client_key_path(&self) -> PathBuf {
        self.dir.path().join("client_ed25519")
    }

    /// The user to log in as: the one running the tests.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// What sshd logged since it became ready (LogLevel VERBOSE): e.g. `Accepted publickey`,
    /// `Failed publickey`, `Connection closed by … [preauth]`.
    pub fn log(&self) -> String {
        let log = read_log(self.dir.path());
        log.get(self.log_start..).unwrap_or("").to_string()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// Starts sshd on `address` (inside `netns` when given) with the config and keys in `dir`
/// and waits until it is ready: it sent its banner to a probe connection and logged the end
/// of that connection. Returns the child and the log length at that point, or the log if
/// sshd exited first.
fn spawn_ready(
    dir: &Path,
    address: SocketAddr,
    netns: Option<&str>,
) -> Result<(Child, usize), String> {
    let config = dir.join("sshd_config");
    std::fs::write(&config, sshd_config(dir, address)).expect("write sshd_config");
    let log = File::create(dir.join("sshd.log")).expect("create sshd.log");
    // `ip netns exec` execs sshd in place, so the child is sshd itself either way.
    let mut command = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, SSHD]);
            c
        }
        None => Command::new(SSHD),
    };
    let mut child = command
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {SSHD}: {e}"));

    let probe = poll(START_TIMEOUT, || match child.try_wait() {
        Ok(Some(_)) => Some(None),
        _ => banner_probe(&address).map(Some),
    });
    let probe_port = match probe {
        Some(Some(port)) => port,
        Some(None) => return Err(read_log(dir)),
        None => {
            kill(&mut child);
            panic!(
                "sshd did not answer within {START_TIMEOUT:?}\n{}",
                read_log(dir)
            );
        }
    };
    // The probe's own log lines come from sshd's per-connection process, a little later.
    let probe_end = format!("port {probe_port}");
    wait_until(
        START_TIMEOUT,
        "sshd to log the end of the readiness probe",
        || {
            read_log(dir)
                .lines()
                .any(|l| l.contains(&probe_end) && !l.starts_with("Connection from"))
        },
    );
    Ok((child, read_log(dir).len()))
}

/// Connects to `address` and reads the SSH banner; the probe's local port when the banner
/// is `SSH-2.0-…`.
fn banner_probe(address: &SocketAddr) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(address, Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut banner = [0u8; 255];
    let n = stream.read(&mut banner).ok()?;
    let local_port = stream.local_addr().ok()?.port();
    banner[..n].starts_with(b"SSH-2.0").then_some(local_port)
}

fn sshd_config(dir: &Path, address: SocketAddr) -> String {
    let d = dir.display();
    let (ip, port) = (address.ip(), address.port());
    format!(
        "ListenAddress {ip}
Port {port}
HostKey {d}/host_ed25519
PidFile {d}/sshd.pid
AuthorizedKeysFile {d}/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
AllowAgentForwarding no
UseDNS no
LogLevel VERBOSE
MaxStartups 500:30:1000
MaxSessions 100
"
    )
}

fn read_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
}

fn is_port_taken(log: &str) -> bool {
    log.contains("Address already in use") || log.contains("Cannot bind any address")
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// sshd refuses to start without its privilege separation folder. Creating it needs root;
/// when that fails, sshd's own message says what is missing.
fn ensure_privsep_dir() {
    let _ = std::fs::create_dir_all("/run/sshd");
}

/// Generates an ed25519 key pair at `path` and returns the public key as `TYPE BASE64`.
fn keygen(path: &Path) -> String {
    let output = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run ssh-keygen: {e}"));
    assert!(
        output.status.success(),
        "ssh-keygen failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let public = std::fs::read_to_string(path.with_extension("pub")).expect("read public key");
    let words: Vec<&str> = public.split_whitespace().take(2).collect();
    words.join(" ")
}

/// A fresh ed25519 public key as `ssh-ed25519 AAAA…`: a well-formed pin that matches no
/// server (for wrong-pin tests).
pub fn fresh_ed25519_key_line() -> String {
    let dir = tempfile::tempdir().expect("create temp dir");
    keygen(&dir.path().join("key"))
}

/// The name of the user running the tests.
fn current_user() -> String {
    let output = Command::new("id")
        .arg("-un")
        .output()
        .unwrap_or_else(|e| panic!("run id -un: {e}"));
    assert!(output.status.success(), "id -un failed");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}
