//! A tiny HTTP server on `127.0.0.1:0` that records every request and answers with a
//! configurable sequence of statuses: the stand-in for a webhook receiver (Slack, Teams, a
//! ticketing system) that cannot run here.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::wait_for;

/// How long a connection may sit idle before the stub gives up on it.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest request body the stub reads.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// One request the stub received.
#[derive(Debug, Clone)]
pub struct StubRequest {
    pub method: String,
    /// The request target as sent: path and query.
    pub path: String,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When the request was complete, for checking retry backoff.
    pub at: Instant,
    /// The status the stub answered with.
    pub answered: u16,
}

impl StubRequest {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} {} body is not JSON: {e}\n{}",
                self.method,
                self.path,
                self.text()
            )
        })
    }
}

struct Shared {
    requests: Mutex<Vec<StubRequest>>,
    /// The status of the n-th request; the last one repeats.
    statuses: Vec<u16>,
    answered: AtomicUsize,
    stopping: AtomicBool,
}

impl Shared {
    fn next_status(&self) -> u16 {
        let n = self.answered.fetch_add(1, Ordering::SeqCst);
        self.statuses
            .get(n)
            .or(self.statuses.last())
            .copied()
            .unwrap_or(200)
    }
}

/// A recording HTTP server; stops on drop.
pub struct HttpStub {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl HttpStub {
    /// A stub that answers every request `200 OK`.
    pub fn start() -> HttpStub {
        HttpStub::with_statuses(&[200])
    }

    /// A stub whose n-th request (in arrival order) is answered `statuses[n]`, and every
    /// request after the last one with the last status.
    pub fn with_statuses(statuses: &[u16]) -> HttpStub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the HTTP stub");
        let addr = listener.local_addr().expect("stub address");
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            statuses: statuses.to_vec(),
            answered: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
        });
        let accepting = Arc::clone(&shared);
        let acceptor = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accepting.stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let shared = Arc::clone(&accepting);
                // One thread per connection, so a client that holds a connection open
                // never delays another.
                std::thread::spawn(move || serve(stream, &shared));
            }
        });
        HttpStub {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<StubRequest> {
        self.shared.requests.lock().expect("stub requests").clone()
    }

    /// The requests received so far whose path starts with `prefix`.
    pub fn requests_to(&self, prefix: &str) -> Vec<StubRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.starts_with(prefix))
            .collect()
    }

    /// Waits until at least `n` requests to paths starting with `prefix` arrived, and
    /// returns them all; panics after `timeout`.
    pub fn wait_for_requests(&self, prefix: &str, n: usize, timeout: Duration) -> Vec<StubRequest> {
        wait_for(
            timeout,
            &format!("{n} request(s) to {}{prefix}", self.url()),
            || {
                let got = self.requests_to(prefix);
                (got.len() >= n).then_some(got)
            },
        )
    }
}

impl Drop for HttpStub {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the acceptor so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Reads one request from `stream`, records it, answers it and closes the connection.
fn serve(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let Some(request) = read_request(&mut reader) else {
        return;
    };
    if shared.stopping.load(Ordering::SeqCst) {
        return;
    }
    let status = shared.next_status();
    shared
        .requests
        .lock()
        .expect("stub requests")
        .push(StubRequest {
            answered: status,
            ..request
        });
    let body = format!("stub says {status}\n");
    let response = format!(
        "HTTP/1.1 {status} Stub\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = writer.write_all(response.as_bytes());
    let _ = writer.flush();
}

/// Parses a request line, headers and a `Content-Length` or chunked body.
fn read_request(reader: &mut impl BufRead) -> Option<StubRequest> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let chunked = find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        read_chunked(reader)?
    } else {
        let length: usize = find("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
            .min(MAX_BODY);
        let mut body = vec![0; length];
        reader.read_exact(&mut body).ok()?;
        body
    };
    Some(StubRequest {
        method,
        path,
        headers,
        body,
        at: Instant::now(),
        answered: 0,
    })
}

fn read_chunked(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size).ok()?;
        let size = usize::from_str_radix(size.trim().split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            // Trailers, if any, end with an empty line.
            loop {
                let mut trailer = String::new();
                if reader.read_line(&mut trailer).ok()? == 0 || trailer.trim().is_empty() {
                    return Some(body);
                }
            }
        }
        if body.len() + size > MAX_BODY {
            return None;
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).ok()?;
        let mut crlf = String::new();
        reader.read_line(&mut crlf).ok()?;
    }
}
