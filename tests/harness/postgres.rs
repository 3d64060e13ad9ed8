//! A throwaway PostgreSQL: `initdb` and `pg_ctl` (Debian's `postgresql` package) in a temp
//! folder owned by the unprivileged `postgres` user, listening on a free loopback port with
//! its unix socket in the same folder. Each test takes a database of its own
//! ([`Postgres::database`]); the server is stopped (immediately) when dropped.
//!
//! This file is also compiled into the library's unit tests (`store::seam::contract` runs on
//! PostgreSQL through it), so it uses only std, `tempfile` and the `postgres` client.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The user the server runs as: PostgreSQL refuses to run as root.
const PG_USER: &str = "postgres";

/// A running PostgreSQL server.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    databases: AtomicUsize,
}

/// The folder of the newest installed PostgreSQL's programs.
fn pg_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    found.retain(|p| p.join("initdb").exists());
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL is missing: the store tests need initdb and pg_ctl, which the test \
             command installs (apt-get install postgresql)"
        )
    })
}

/// Runs `program args` as the `postgres` user when we are root, as ourselves otherwise.
fn as_pg_user(program: &Path, args: &[&str]) -> Output {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let mut cmd = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", PG_USER, "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Postgres {
    /// Initializes and starts a server; returns once it accepts connections.
    pub fn start() -> Postgres {
        let bin = pg_bin();
        let dir = tempfile::Builder::new()
            .prefix("tandem-pg-")
            .tempdir()
            .expect("create temp dir");
        let owner = Command::new("chown")
            .args(["-R", PG_USER])
            .arg(dir.path())
            .status()
            .expect("chown");
        assert!(owner.success(), "cannot give the temp dir to {PG_USER}");
        let data = dir.path().join("data");
        let data = data.to_str().expect("utf-8 temp path");
        let init = as_pg_user(
            &bin.join("initdb"),
            &[
                "-D",
                data,
                "-U",
                PG_USER,
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        assert!(
            init.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let pg = Postgres {
            dir,
            bin,
            port: free_port(),
            databases: AtomicUsize::new(0),
        };
        pg.start_server();
        pg
    }

    /// Starts the server (again, after [`Postgres::stop`]) on the same port and data.
    pub fn start_server(&self) {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("server.log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let started = as_pg_user(
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                data.to_str().expect("utf-8 temp path"),
                "-l",
                log.to_str().expect("utf-8 temp path"),
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
        assert!(
            started.status.success(),
            "pg_ctl start failed: {}\n{}",
            String::from_utf8_lossy(&started.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server at once (`-m immediate`: like a crash, clients are cut off).
    pub fn stop(&self) {
        let data = self.dir.path().join("data");
        let _ = as_pg_user(
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                data.to_str().expect("utf-8 temp path"),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres://{PG_USER}@127.0.0.1:{}/{name}?sslmode=disable",
            self.port
        )
    }

    /// Creates a fresh, empty database and returns its URL.
    pub fn database(&self) -> String {
        let n = self.databases.fetch_add(1, Ordering::SeqCst);
        let name = format!("t{n}");
        let mut admin = postgres::Client::connect(&self.url("postgres"), postgres::NoTls)
            .expect("connect to the test server");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create a test database");
        self.url(&name)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
