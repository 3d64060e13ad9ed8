//! Network namespaces as test hosts: each [`NetnsHost`] is a separate network stack on this
//! machine with its own sshd, joined to the test's namespace by a veth pair, so that a test
//! can firewall a "host" without touching the machine's own network. [`NetnsHost::add_peer`]
//! joins another namespace to the host, standing for the rest of the network.
//!
//! Every namespace and link is made here, named uniquely per test, and removed on drop.
//! Addresses come from 198.18.0.0/15, the range set aside for network tests (RFC 2544), one
//! /30 per link, and exist only on the links made here. Needs root.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::Sshd;

/// The first address of 198.18.0.0/15.
const RANGE_START: u32 = u32::from_be_bytes([198, 18, 0, 0]);

/// /30 blocks in 198.18.0.0/15.
const BLOCKS: u32 = 1 << 15;

/// Numbers the namespaces and links of this process.
static SEQUENCE: AtomicU32 = AtomicU32::new(0);

/// Held while a block is picked and its link made, so two tests never take the same block.
static ALLOCATION: Mutex<()> = Mutex::new(());

/// A network namespace with its loopback up, deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    /// A fresh namespace named `tandem-test-PID-N`.
    pub fn new() -> Netns {
        assert!(
            is_root(),
            "network namespace tests need root (ip netns add); CI runs them as root"
        );
        let name = format!(
            "tandem-test-{}-{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::SeqCst)
        );
        // A namespace left by a crashed run of this same pid would be reused stale.
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's name, for `ip netns exec`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec NAME program`, to add arguments to and run.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `program args` in the namespace and returns its output, whatever its status.
    pub fn output(&self, program: &str, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("ip netns exec {} {program}: {e}", self.name))
    }

    /// Runs `program args` in the namespace; panics with its output when it fails.
    pub fn run(&self, program: &str, args: &[&str]) -> String {
        let out = self.output(program, args);
        assert!(
            out.status.success(),
            "in netns {}: {program} {args:?} failed: {}\n{}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ip ARGS` inside the namespace.
    fn ip(&self, args: &[&str]) -> String {
        self.run("ip", args)
    }

    /// Whether a TCP connection from this namespace to `address:port` is set up within
    /// `within` (bash's /dev/tcp under `timeout`). A dropped SYN takes the whole `within`.
    pub fn tcp_connects(&self, address: IpAddr, port: u16, within: Duration) -> bool {
        let seconds = format!("{:.1}", within.as_secs_f64());
        let script = format!("exec 3<>/dev/tcp/{address}/{port}");
        self.output("timeout", &[&seconds, "bash", "-c", &script])
            .status
            .success()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// A veth pair between two namespaces (`None`: the test's own), with one /30 on it. Deleted
/// on drop (deleting one end deletes both).
pub struct Link {
    /// The end in namespace `a`, and the one in `b`.
    ends: [String; 2],
    /// Where `ends[0]` lives: `None` for the test's own namespace.
    a_netns: Option<String>,
    addresses: [Ipv4Addr; 2],
}

impl Link {
    /// Joins namespace `a` (`None`: the test's own) to namespace `b`.
    pub fn new(a: Option<&Netns>, b: &Netns) -> Link {
        let _guard = ALLOCATION.lock().unwrap_or_else(|e| e.into_inner());
        let n = SEQUENCE.fetch_add(1, Ordering::SeqCst);
        // Interface names have at most 15 bytes.
        let base = format!("tt{:x}{n:x}", std::process::id());
        let ends = [format!("{base}a"), format!("{base}b")];
        let block = free_block(n);
        let addresses = [
            Ipv4Addr::from(RANGE_START + block * 4 + 1),
            Ipv4Addr::from(RANGE_START + block * 4 + 2),
        ];
        ip(&[
            "link", "add", &ends[0], "type", "veth", "peer", "name", &ends[1],
        ]);
        // From here on, dropping `link` removes the pair, also when a step below fails.
        let mut link = Link {
            ends,
            a_netns: None,
            addresses,
        };
        let [end_a, end_b] = link.ends.clone();
        ip(&["link", "set", &end_b, "netns", b.name()]);
        if let Some(ns) = a {
            ip(&["link", "set", &end_a, "netns", ns.name()]);
            link.a_netns = Some(ns.name().to_string());
        }
        let address_a = format!("{}/30", addresses[0]);
        let address_b = format!("{}/30", addresses[1]);
        for args in [
            &["addr", "add", &address_a, "dev", &end_a][..],
            &["link", "set", &end_a, "up"][..],
        ] {
            match a {
                Some(ns) => ns.ip(args),
                None => ip(args),
            };
        }
        b.ip(&["addr", "add", &address_b, "dev", &end_b]);
        b.ip(&["link", "set", &end_b, "up"]);
        link
    }

    /// The address on side `a`.
    pub fn a_address(&self) -> IpAddr {
        IpAddr::V4(self.addresses[0])
    }

    /// The address on side `b`.
    pub fn b_address(&self) -> IpAddr {
        IpAddr::V4(self.addresses[1])
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // A namespace is only destroyed once nothing uses it, so its end may outlive `ip
        // netns del`; deleting the end here removes the pair and its addresses at once.
        let mut c = match &self.a_netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "ip"]);
                c
            }
            None => Command::new("ip"),
        };
        let _ = c
            .args(["link", "del", &self.ends[0]])
            .stderr(Stdio::null())
            .status();
    }
}

/// A /30 block of the range that no address of the test's namespace is in, starting from
/// one derived from the pid and `n`, so concurrent test processes rarely even try the same.
fn free_block(n: u32) -> u32 {
    let taken: Vec<u32> = ip(&["-4", "-o", "addr", "show"])
        .split_whitespace()
        .filter_map(|word| word.split('/').next()?.parse::<Ipv4Addr>().ok())
        .map(u32::from)
        .filter(|a| (RANGE_START..RANGE_START + BLOCKS * 4).contains(a))
        .map(|a| (a - RANGE_START) / 4)
        .collect();
    let start = (std::process::id().wrapping_mul(97) + n) % BLOCKS;
    (0..BLOCKS)
        .map(|i| (start + i) % BLOCKS)
        .find(|b| !taken.contains(b))
        .expect("a free /30 in 198.18.0.0/15")
}

/// A test host: a namespace joined to the test's own by a veth pair, with sshd listening on
/// its end. Commands that tandem runs there over SSH run as root on this machine's
/// filesystem, with the namespace's network. Everything is removed on drop.
pub struct NetnsHost {
    // Dropped in this order: sshd out of the namespace first, then the link, then the
    // namespace, so nothing keeps the namespace alive.
    sshd: Sshd,
    link: Link,
    netns: Netns,
}

impl NetnsHost {
    /// Makes the namespace and its link and starts sshd there.
    pub fn start() -> NetnsHost {
        let netns = Netns::new();
        let link = Link::new(None, &netns);
        let sshd = Sshd::start_in(netns.name(), link.b_address());
        NetnsHost { sshd, link, netns }
    }

    /// The host's sshd: give it to [`HostSpec::ssh`](super::HostSpec::ssh).
    pub fn sshd(&self) -> &Sshd {
        &self.sshd
    }

    /// The host's namespace, to run commands in.
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// The host's address on the management link: where tandem connects.
    pub fn address(&self) -> IpAddr {
        self.link.b_address()
    }

    /// The test's (and so tandem's) address as the host sees it.
    pub fn mgmt_address(&self) -> IpAddr {
        self.link.a_address()
    }

    /// Whether a TCP connection from the test's namespace to the host's `port` is set up
    /// within `within`.
    pub fn tcp_connects_from_test(&self, port: u16, within: Duration) -> bool {
        TcpStream::connect_timeout(&SocketAddr::new(self.address(), port), within).is_ok()
    }

    /// Another namespace joined to this host by its own link, with a route to the host's
    /// address: the rest of the network, as far as the host can tell.
    pub fn add_peer(&self) -> Peer {
        let netns = Netns::new();
        let link = Link::new(Some(&netns), &self.netns);
        netns.ip(&[
            "route",
            "add",
            &format!("{}/32", self.address()),
            "via",
            &link.b_address().to_string(),
        ]);
        Peer {
            link,
            netns,
            host_address: self.address(),
        }
    }
}

/// A namespace joined to a [`NetnsHost`] (see [`NetnsHost::add_peer`]); removed on drop.
pub struct Peer {
    link: Link,
    netns: Netns,
    host_address: IpAddr,
}

impl Peer {
    /// The peer's namespace, to run commands in.
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// The peer's own address on its link to the host.
    pub fn address(&self) -> IpAddr {
        self.link.a_address()
    }

    /// The host's address, which the peer reaches over its own link (where sshd listens).
    pub fn host_address(&self) -> IpAddr {
        self.host_address
    }
}

/// Runs `ip ARGS` in the test's namespace; panics with its output when it fails.
fn ip(args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run ip {args:?}: {e}"));
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
