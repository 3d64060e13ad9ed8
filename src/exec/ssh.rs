//! SSH with ssh2. Blocking: only ever called from a blocking thread.
//!
//! The pinned host key is compared right after the key exchange and before any
//! authentication: a host that presents another key never sees our user name or key. The
//! agent is never used or forwarded. One [`SshSession`] serves all of a host's actions in a
//! run.

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::{Digest, Sha256};
use ssh2::{MethodType, Session};

use super::{ExecError, OutputSink, Stop, Stream};
use crate::config::HostKey;

/// How to log in: a private key file or a key held in a secret.
pub enum Credential<'a> {
    File(&'a std::path::Path),
    Pem(&'a str),
}

/// Where and how to connect.
pub struct Target<'a> {
    pub address: &'a str,
    pub port: u16,
    pub user: &'a str,
    pub host_key: &'a HostKey,
    pub credential: Credential<'a>,
}

/// Hosts that read their channels at once, daemon-wide. Two cores decrypt and store output
/// at the same rate whether 16 or 200 hosts take turns; what grows with the readers is the
/// memory in flight (libssh2's queued packets, up to a window each, and a read buffer), so
/// 200 hosts printing at once hold 16 hosts' worth of it.
pub const READERS: usize = 16;

/// One read: a whole data packet.
const READ_BUF: usize = CHANNEL_PACKET as usize;

/// The daemon's read slots, each with its buffer.
struct ReadSlots {
    state: Mutex<SlotState>,
    freed: Condvar,
}

struct SlotState {
    free: usize,
    /// Buffers of slots given back, kept for the next taker.
    bufs: Vec<Vec<u8>>,
}

static READ_SLOTS: ReadSlots = ReadSlots {
    state: Mutex::new(SlotState {
        free: READERS,
        bufs: Vec::new(),
    }),
    freed: Condvar::new(),
};

/// A taken read slot: given back on drop.
struct ReadSlot {
    buf: Vec<u8>,
}

impl ReadSlots {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        // A panic while holding the lock cannot leave the count wrong: nothing in it unwinds.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot, waiting at most [`super::IDLE_TICK`] for one; `None` after that, so the
    /// caller can check its deadline and flush its output.
    fn take(&self) -> Option<ReadSlot> {
        let mut st = self.lock();
        if st.free == 0 {
            st = match self.freed.wait_timeout(st, super::IDLE_TICK) {
                Ok((st, _)) => st,
                Err(p) => p.into_inner().0,
            };
        }
        if st.free == 0 {
            return None;
        }
        st.free -= 1;
        let buf = st.bufs.pop().unwrap_or_else(|| vec![0; READ_BUF]);
        Some(ReadSlot { buf })
    }
}

impl Drop for ReadSlot {
    fn drop(&mut self) {
        let mut st = READ_SLOTS.lock();
        st.free += 1;
        st.bufs.push(std::mem::take(&mut self.buf));
        drop(st);
        READ_SLOTS.freed.notify_one();
    }
}

/// An authenticated SSH session to one host.
pub struct SshSession {
    session: Session,
    /// A second handle on the socket, used only to wait until it is readable.
    socket: TcpStream,
}

/// `SHA256:…` fingerprint of a key blob, as `ssh-keygen -l` prints it.
pub fn fingerprint(blob: &[u8]) -> String {
    let digest = Sha256::digest(blob);
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    )
}

/// How much output a host may send before we take it. libssh2 drains the socket into its
/// packet queue whenever the channel is read, up to the window, so the window times the
/// hosts reading at once ([`READERS`]) bounds that memory: 4 MiB. Below 4x the read size,
/// libssh2 sends a window adjustment (a packet, a syscall, a wake-up of the host's sshd)
/// on every read; at 256 KiB, every 32 KiB or more.
const CHANNEL_WINDOW: u32 = 256 * 1024;
/// The largest data packet the host may send: one read of our buffer.
const CHANNEL_PACKET: u32 = 32 * 1024;

const KEX_PREFS: &str = "curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,ecdh-sha2-nistp384,diffie-hellman-group14-sha256,diffie-hellman-group16-sha512";

/// Ciphers, both directions: the ones OpenSSH offers by default, in OpenSSH's order but for
/// CTR after GCM; CBC, 3DES, arcfour and the rest of libssh2's default list are not offered.
/// ChaCha20-Poly1305 stays first although libssh2 runs it in portable C: libssh2 1.11
/// drives AES through OpenSSL one 16-byte block per call, which measured costlier per byte
/// of output (AES-GCM: about a third more of the daemon's crypto time than ChaCha20 on an
/// AES-NI machine), so AES first would not pay.
const CIPHER_PREFS: &str = "chacha20-poly1305@openssh.com,aes128-gcm@openssh.com,aes256-gcm@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr";

/// MACs for the CTR ciphers (AEAD ciphers carry their own): OpenSSH's default list as far
/// as libssh2 has it, encrypt-then-MAC first; MD5, RIPEMD and truncated MACs not offered.
const MAC_PREFS: &str = "hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,hmac-sha1-etm@openssh.com,hmac-sha2-256,hmac-sha2-512,hmac-sha1";

/// The host-key algorithms to offer for a pinned key type, so the server presents the key
/// that was pinned rather than another one it also has.
fn hostkey_prefs(key_type: &str) -> &str {
    match key_type {
        "ssh-rsa" => "rsa-sha2-512,rsa-sha2-256,ssh-rsa",
        other => other,
    }
}

impl SshSession {
    /// Connects, checks the pinned host key, then authenticates with the key.
    pub fn connect(t: &Target<'_>, stop: &Stop<'_>) -> Result<SshSession, ExecError> {
        let addr: SocketAddr = (t.address, t.port)
            .to_socket_addrs()
            .map_err(|e| ExecError::Connect(format!("{}:{}: {e}", t.address, t.port)))?
            .next()
            .ok_or_else(|| ExecError::Connect(format!("{}:{}: no address", t.address, t.port)))?;
        let connect_timeout = stop.remaining().min(Duration::from_secs(10));
        if connect_timeout.is_zero() {
            return Err(ExecError::Timeout("connect".into()));
        }
        let tcp = TcpStream::connect_timeout(&addr, connect_timeout)
            .map_err(|e| ExecError::Connect(format!("{addr}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let socket = tcp
            .try_clone()
            .map_err(|e| ExecError::Connect(format!("{addr}: {e}")))?;
        let mut session = Session::new().map_err(|e| ExecError::Connect(e.to_string()))?;
        session.set_tcp_stream(tcp);
        session.set_timeout(millis(connect_timeout));
        // Curve25519 first: the cheapest key exchange both ends have.
        let _ = session.method_pref(MethodType::Kex, KEX_PREFS);
        for (method, prefs) in [
            (MethodType::CryptCs, CIPHER_PREFS),
            (MethodType::CryptSc, CIPHER_PREFS),
            (MethodType::MacCs, MAC_PREFS),
            (MethodType::MacSc, MAC_PREFS),
        ] {
            session
                .method_pref(method, prefs)
                .map_err(|e| ExecError::Connect(format!("cipher preference: {e}")))?;
        }
        session
            .method_pref(MethodType::HostKey, hostkey_prefs(&t.host_key.key_type))
            .map_err(|e| ExecError::Connect(format!("host key preference: {e}")))?;
        let handshake_started = Instant::now();
        if let Err(e) = session.handshake() {
            // A host that accepts the connection and never answers is a timeout, not a
            // refusal: say so, so the operator looks at the host rather than the network.
            if handshake_started.elapsed() + Duration::from_millis(100) >= connect_timeout {
                return Err(ExecError::Timeout(format!(
                    "{addr}: no SSH handshake within {connect_timeout:?}"
                )));
            }
            return Err(ExecError::Connect(format!("{addr}: SSH handshake: {e}")));
        }

        // Rule 7: compare before any authentication. No trust on first use.
        let presented = session
            .host_key()
            .map(|(k, _)| k.to_vec())
            .unwrap_or_default();
        if presented != t.host_key.blob {
            let _ = session.disconnect(None, "host key mismatch", None);
            return Err(ExecError::HostKeyMismatch {
                expected: fingerprint(&t.host_key.blob),
                presented: if presented.is_empty() {
                    "no key".into()
                } else {
                    fingerprint(&presented)
                },
            });
        }

        let auth = match &t.credential {
            Credential::File(path) => match std::fs::read_to_string(path)
                .ok()
                .and_then(|pem| Some((openssh_public_key(&pem)?, pem)))
            {
                Some((public, pem)) => {
                    session.userauth_pubkey_memory(t.user, Some(&public), &pem, None)
                }
                // Another format, or unreadable: libssh2 reads it and says what is wrong.
                None => session.userauth_pubkey_file(t.user, None, path, None),
            },
            Credential::Pem(pem) => {
                let public = openssh_public_key(pem);
                session.userauth_pubkey_memory(t.user, public.as_deref(), pem, None)
            }
        };
        if let Err(e) = auth {
            return Err(ExecError::Auth(format!(
                "{}@{addr}: {}",
                t.user,
                e.message()
            )));
        }
        if !session.authenticated() {
            return Err(ExecError::Auth(format!("{}@{addr}: not accepted", t.user)));
        }
        Ok(SshSession { session, socket })
    }

    /// Runs one command, handing its output to `sink` as it arrives; returns its exit
    /// code. Gives up at the deadline or on cancellation, closing the channel.
    pub fn exec(
        &mut self,
        command: &str,
        stop: &Stop<'_>,
        sink: &mut dyn OutputSink,
    ) -> Result<i64, ExecError> {
        let io = |e: ssh2::Error| ExecError::Io(format!("ssh: {}", e.message()));
        self.session.set_blocking(true);
        self.session
            .set_timeout(millis(stop.remaining().min(Duration::from_secs(30))));
        let mut channel = self
            .session
            .channel_open("session", CHANNEL_WINDOW, CHANNEL_PACKET, None)
            .map_err(io)?;
        channel.exec(command).map_err(io)?;

        // Read stdout and stderr without blocking, so that neither fills up while we wait on
        // the other; when libssh2 has nothing, wait on the socket itself. Reading takes one
        // of the daemon's read slots (and its buffer), given back whenever the channel has
        // nothing: a host waiting for a slot leaves its output in the socket and on the
        // host, not in our heap.
        self.session.set_blocking(false);
        let mut slot: Option<ReadSlot> = None;
        let result = loop {
            let Some(reading) = slot.as_mut() else {
                match READ_SLOTS.take() {
                    Some(s) => slot = Some(s),
                    None => {
                        if let Some(e) = stop.check(command) {
                            break Err(e);
                        }
                        sink.idle();
                    }
                }
                continue;
            };
            let buf = &mut reading.buf[..];
            let mut progressed = false;
            match channel.read(buf) {
                Ok(0) => {}
                Ok(n) => {
                    sink.data(Stream::Stdout, &buf[..n]);
                    progressed = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => break Err(ExecError::Io(format!("ssh read: {e}"))),
            }
            match channel.stderr().read(buf) {
                Ok(0) => {}
                Ok(n) => {
                    sink.data(Stream::Stderr, &buf[..n]);
                    progressed = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => break Err(ExecError::Io(format!("ssh read: {e}"))),
            }
            if !progressed && channel.eof() {
                break Ok(());
            }
            if let Some(e) = stop.check(command) {
                break Err(e);
            }
            if !progressed {
                slot = None;
                sink.idle();
                self.wait_readable(stop);
            }
        };
        drop(slot);
        self.session.set_blocking(true);
        if let Err(e) = result {
            let _ = channel.close();
            return Err(e);
        }
        self.session.set_timeout(millis(
            stop.remaining()
                .max(Duration::from_millis(100))
                .min(Duration::from_secs(10)),
        ));
        let _ = channel.wait_close();
        let code = channel.exit_status().map_err(io)?;
        Ok(code as i64)
    }

    /// Blocks until the socket has data, at most [`super::IDLE_TICK`] or the deadline.
    ///
    /// libssh2 puts the socket in non-blocking mode at the handshake, and this handle shares
    /// it: the wait makes it blocking for the peek and gives it back. Without that the peek
    /// returns at once and the read loop spins, which cost a core while a host was slow to
    /// send (and most of the daemon's CPU per byte of output).
    fn wait_readable(&self, stop: &Stop<'_>) {
        let wait = stop
            .remaining()
            .min(super::IDLE_TICK)
            .max(Duration::from_millis(1));
        if self.socket.set_nonblocking(false).is_err() {
            // Cannot wait on the socket: at least do not spin.
            std::thread::sleep(Duration::from_millis(1));
            return;
        }
        let _ = self.socket.set_read_timeout(Some(wait));
        let started = Instant::now();
        let mut probe = [0u8; 1];
        let peeked = self.socket.peek(&mut probe);
        let _ = self.socket.set_nonblocking(true);
        match peeked {
            // The peer closed: let libssh2 notice on its next read. Avoid a busy loop.
            Ok(0) if started.elapsed() < Duration::from_millis(1) => {
                std::thread::sleep(Duration::from_millis(1))
            }
            _ => {}
        }
    }
}

impl Drop for SshSession {
    fn drop(&mut self) {
        self.session.set_blocking(true);
        self.session.set_timeout(1000);
        let _ = self.session.disconnect(None, "tandem run finished", None);
    }
}

/// The public key of an OpenSSH-format private key (`-----BEGIN OPENSSH PRIVATE KEY-----`,
/// what `ssh-keygen` writes), as an `authorized_keys` line (`ssh-ed25519 AAAA…`), read from
/// the key's header, where it is stored in the clear. `None` for any other format.
///
/// Handed to libssh2 with the private key, it saves a decoding of the private key per
/// connection: without it libssh2 derives the public key by decoding the private key once
/// more, and with OpenSSL 3 every decoding sets up a decoder chain (about 6 million
/// instructions, a fifth of the daemon's CPU at 50 hosts × 1 MiB of output).
fn openssh_public_key(pem: &str) -> Option<String> {
    const BEGIN: &str = "-----BEGIN OPENSSH PRIVATE KEY-----";
    const END: &str = "-----END OPENSSH PRIVATE KEY-----";
    let body = pem.trim().strip_prefix(BEGIN)?.strip_suffix(END)?;
    let body: String = body.split_ascii_whitespace().collect();
    let blob = base64::engine::general_purpose::STANDARD
        .decode(body)
        .ok()?;
    let mut rest = blob.strip_prefix(b"openssh-key-v1\0")?;
    // Cipher, KDF and its options, then the number of keys and the first public key.
    for _ in 0..3 {
        ssh_string(&mut rest)?;
    }
    let count = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
    rest = &rest[4..];
    if count != 1 {
        return None;
    }
    let public = ssh_string(&mut rest)?;
    let mut key = public;
    let kind = std::str::from_utf8(ssh_string(&mut key)?).ok()?;
    if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    Some(format!(
        "{kind} {}",
        base64::engine::general_purpose::STANDARD.encode(public)
    ))
}

/// Takes one SSH `string` (a big-endian u32 length, then that many bytes) off `buf`.
fn ssh_string<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = u32::from_be_bytes(buf.get(..4)?.try_into().ok()?) as usize;
    let s = buf.get(4..4usize.checked_add(len)?)?;
    *buf = &buf[4 + len..];
    Some(s)
}

fn millis(d: Duration) -> u32 {
    d.as_millis().clamp(1, u32::MAX as u128) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ssh-keygen` writes a key; its `.pub` file is the public key we must read.
    #[test]
    fn the_public_key_is_read_from_an_openssh_private_key() {
        let dir = tempfile::tempdir().unwrap();
        for (name, args) in [
            ("ed25519", &["-t", "ed25519", "-N", ""][..]),
            ("ecdsa", &["-t", "ecdsa", "-N", ""]),
            ("rsa", &["-t", "rsa", "-b", "2048", "-N", ""]),
            // The public part of a key with a passphrase is still in the clear.
            ("locked", &["-t", "ed25519", "-N", "a passphrase"]),
        ] {
            let path = dir.path().join(name);
            let status = std::process::Command::new("ssh-keygen")
                .args(args)
                .args(["-q", "-C", "a comment", "-f"])
                .arg(&path)
                .status()
                .unwrap();
            assert!(status.success(), "ssh-keygen {name}");
            let private = std::fs::read_to_string(&path).unwrap();
            let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
            let want: Vec<&str> = public.split_whitespace().take(2).collect();
            assert_eq!(openssh_public_key(&private), Some(want.join(" ")), "{name}");
        }
    }

    #[test]
    fn other_formats_and_damaged_keys_have_no_public_key_here() {
        assert_eq!(openssh_public_key(""), None);
        assert_eq!(
            openssh_public_key("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
            None
        );
        let truncated = format!(
            "-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(b"openssh-key-v1\0\0\0\0\x04none")
        );
        assert_eq!(openssh_public_key(&truncated), None);
        let huge_length = format!(
            "-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(b"openssh-key-v1\0\xff\xff\xff\xff")
        );
        assert_eq!(openssh_public_key(&huge_length), None);
    }
}
