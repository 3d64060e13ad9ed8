//! The one connection type the store's operations are written against, and the one place
//! the two SQL dialects differ.
//!
//! Every statement in the store is written once, in SQLite's syntax restricted to what
//! PostgreSQL also accepts: numbered placeholders `?N`, `RETURNING id`, `ON CONFLICT`,
//! quoted `"user"`, no `DISTINCT` with an `ORDER BY` outside the select list. [`pg_sql`]
//! turns the few remaining differences into PostgreSQL's (`?N` → `$N`, `INSERT OR IGNORE`
//! → `ON CONFLICT DO NOTHING`) and [`pg_ddl`] the schema's types (`INTEGER` → `BIGINT`,
//! `BLOB` → `BYTEA`, rowid keys → identity columns, text compared bytewise like SQLite).
//! Parameters are [`Param`]s (null, integer, text, bytes) and rows are read through
//! [`Row`], so no operation names a driver.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::StoreError;

/// A statement parameter: what both databases store.
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    Blob(&'a [u8]),
}

/// A value that binds as a statement parameter.
pub trait ToParam {
    fn to_param(&self) -> Param<'_>;
}

impl ToParam for str {
    fn to_param(&self) -> Param<'_> {
        Param::Text(self)
    }
}
impl ToParam for String {
    fn to_param(&self) -> Param<'_> {
        Param::Text(self)
    }
}
impl ToParam for [u8] {
    fn to_param(&self) -> Param<'_> {
        Param::Blob(self)
    }
}
impl ToParam for Vec<u8> {
    fn to_param(&self) -> Param<'_> {
        Param::Blob(self)
    }
}
impl ToParam for i64 {
    fn to_param(&self) -> Param<'_> {
        Param::Int(*self)
    }
}
impl ToParam for bool {
    fn to_param(&self) -> Param<'_> {
        Param::Int(i64::from(*self))
    }
}
impl<T: ToParam + ?Sized> ToParam for &T {
    fn to_param(&self) -> Param<'_> {
        (**self).to_param()
    }
}
impl<T: ToParam> ToParam for Option<T> {
    fn to_param(&self) -> Param<'_> {
        match self {
            Some(v) => v.to_param(),
            None => Param::Null,
        }
    }
}

/// The parameters of one statement: `p![a, b]`.
macro_rules! p {
    ($($x:expr),* $(,)?) => {
        &[$($crate::store::db::ToParam::to_param(&$x)),*][..]
    };
}
pub(crate) use p;

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match *self {
            Param::Null => ValueRef::Null,
            Param::Int(i) => ValueRef::Integer(i),
            Param::Text(s) => ValueRef::Text(s.as_bytes()),
            Param::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

impl postgres::types::ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::{IsNull, Type};
        match *self {
            Param::Null => Ok(IsNull::Yes),
            Param::Int(i) if *ty == Type::INT4 => i32::try_from(i)?.to_sql(ty, out),
            Param::Int(i) if *ty == Type::INT2 => i16::try_from(i)?.to_sql(ty, out),
            Param::Int(i) if *ty == Type::BOOL => (i != 0).to_sql(ty, out),
            Param::Int(i) => i.to_sql(ty, out),
            Param::Text(s) => s.to_sql(ty, out),
            Param::Blob(b) => b.to_sql(ty, out),
        }
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        // Checked per value in `to_sql`, which fails on a type it cannot encode.
        true
    }

    postgres::types::to_sql_checked!();
}

/// One row as read, from either database.
pub enum Row<'a> {
    Lite(&'a rusqlite::Row<'a>),
    Pg(&'a postgres::Row),
}

/// A column's value read into its type; a value of another type is an error, never a default.
pub trait Column: Sized {
    fn from_lite(r: &rusqlite::Row<'_>, i: usize) -> Result<Self, StoreError>;
    fn from_pg(r: &postgres::Row, i: usize) -> Result<Self, StoreError>;
}

macro_rules! plain_column {
    ($($t:ty),*) => {$(
        impl Column for $t {
            fn from_lite(r: &rusqlite::Row<'_>, i: usize) -> Result<Self, StoreError> {
                Ok(r.get(i)?)
            }
            fn from_pg(r: &postgres::Row, i: usize) -> Result<Self, StoreError> {
                Ok(r.try_get(i)?)
            }
        }
    )*};
}
plain_column!(String, Option<String>, i64, Option<i64>, Vec<u8>);

impl Column for bool {
    fn from_lite(r: &rusqlite::Row<'_>, i: usize) -> Result<Self, StoreError> {
        Ok(r.get::<_, i64>(i)? != 0)
    }
    fn from_pg(r: &postgres::Row, i: usize) -> Result<Self, StoreError> {
        // Stored flags are integers, as in SQLite; PostgreSQL's own functions answer BOOL.
        match r.try_get::<_, bool>(i) {
            Ok(b) => Ok(b),
            Err(_) => Ok(r.try_get::<_, i64>(i)? != 0),
        }
    }
}

/// A typed state read from its stored name: a name it does not know is a bad row.
pub fn state_column<T: std::str::FromStr<Err = crate::state::UnknownState>>(
    text: String,
    i: usize,
) -> Result<T, StoreError> {
    text.parse()
        .map_err(|e| StoreError::Row(format!("column {i}: {e}")))
}

impl Row<'_> {
    /// Column `i` as a `T`.
    pub fn get<T: Column>(&self, i: usize) -> Result<T, StoreError> {
        match self {
            Row::Lite(r) => T::from_lite(r, i),
            Row::Pg(r) => T::from_pg(r, i),
        }
    }

    /// Column `i` as text borrowed from the row.
    pub fn str(&self, i: usize) -> Result<&str, StoreError> {
        match self {
            Row::Lite(r) => Ok(r.get_ref(i)?.as_str().map_err(rusqlite::Error::from)?),
            Row::Pg(r) => Ok(r.try_get(i)?),
        }
    }

    /// Column `i` as text or null, borrowed from the row.
    pub fn opt_str(&self, i: usize) -> Result<Option<&str>, StoreError> {
        match self {
            Row::Lite(r) => Ok(r
                .get_ref(i)?
                .as_str_or_null()
                .map_err(rusqlite::Error::from)?),
            Row::Pg(r) => Ok(r.try_get(i)?),
        }
    }

    /// Column `i` as bytes borrowed from the row.
    pub fn blob(&self, i: usize) -> Result<&[u8], StoreError> {
        match self {
            Row::Lite(r) => Ok(r.get_ref(i)?.as_blob().map_err(rusqlite::Error::from)?),
            Row::Pg(r) => Ok(r.try_get(i)?),
        }
    }

    /// A JSON column read into its type; a row that does not parse is an error, not a default.
    pub fn json<T: serde::de::DeserializeOwned>(&self, i: usize) -> Result<T, StoreError> {
        let text = self.str(i)?;
        serde_json::from_str(text).map_err(|e| StoreError::Row(format!("column {i}: {e}")))
    }
}

/// Which database a store speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// One connection to the store's database.
pub enum Conn {
    Lite(rusqlite::Connection),
    Pg(Box<RefCell<PgConn>>),
}

/// A PostgreSQL connection with its prepared statements, and how to open it again.
pub struct PgConn {
    /// Always `Some` but while being dropped (see `Drop`).
    client: Option<postgres::Client>,
    /// Statements prepared on this connection, by their text as written in the store.
    prepared: HashMap<&'static str, postgres::Statement>,
    target: Arc<PgTarget>,
}

/// Where a PostgreSQL store lives: the parsed URL and its TLS setup.
pub struct PgTarget {
    config: postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
}

impl std::fmt::Debug for PgTarget {
    // The URL may carry a password: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgTarget([redacted])")
    }
}

/// How long opening a PostgreSQL connection may take before the store reports it
/// unreachable (a URL's `connect_timeout` wins).
const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl PgTarget {
    /// Parses a `postgres://` URL. `sslmode` is the URL's (`disable`, `prefer`, `require`);
    /// the server's certificate is checked against the Web PKI roots, and against the PEM
    /// file named by `sslrootcert=` if given.
    pub fn parse(url: &str) -> Result<PgTarget, StoreError> {
        let bad = |m: String| StoreError::Config(format!("database_url: {m}"));
        let mut parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        let mut root_file = None;
        let kept: Vec<(String, String)> = parsed
            .query_pairs()
            .filter(|(k, v)| {
                if k == "sslrootcert" {
                    root_file = Some(v.to_string());
                    false
                } else {
                    true
                }
            })
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        parsed.set_query(None);
        if !kept.is_empty() {
            parsed.query_pairs_mut().extend_pairs(kept);
        }
        let mut config: postgres::Config = parsed
            .as_str()
            .parse()
            .map_err(|e: postgres::Error| bad(e.to_string()))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(PG_CONNECT_TIMEOUT);
        }
        // A peer that vanishes (power cut, partition) is noticed within a minute.
        config.keepalives_idle(Duration::from_secs(30));
        config.application_name("tandem");
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(file) = root_file {
            use rustls::pki_types::pem::PemObject;
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(&file)
                .map_err(|e| bad(format!("sslrootcert {file}: {e}")))?;
            for cert in certs {
                let cert = cert.map_err(|e| bad(format!("sslrootcert {file}: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| bad(format!("sslrootcert {file}: {e}")))?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(PgTarget {
            config,
            tls: tokio_postgres_rustls::MakeRustlsConnect::new(tls),
        })
    }

    /// Opens one connection.
    pub fn connect(self: &Arc<Self>) -> Result<Conn, StoreError> {
        let client = off_runtime(|| self.config.connect(self.tls.clone()))?;
        Ok(Conn::Pg(Box::new(RefCell::new(PgConn {
            client: Some(client),
            prepared: HashMap::new(),
            target: self.clone(),
        }))))
    }
}

impl Conn {
    /// Which database this connection speaks to.
    pub fn dialect(&self) -> Dialect {
        match self {
            Conn::Lite(_) => Dialect::Sqlite,
            Conn::Pg(_) => Dialect::Postgres,
        }
    }

    /// A PostgreSQL connection that was lost is opened again (outside a transaction only:
    /// a transaction whose connection died is gone, and its members are told so).
    pub fn reopen_if_lost(&self) -> Result<(), StoreError> {
        if let Conn::Pg(c) = self {
            let mut c = c.borrow_mut();
            if !c.client.as_ref().is_some_and(|c| !c.is_closed()) {
                let target = c.target.clone();
                let lost = c.client.take();
                c.prepared.clear();
                let client = off_runtime(move || {
                    drop(lost);
                    target.config.connect(target.tls.clone())
                })?;
                c.client = Some(client);
            }
        }
        Ok(())
    }

    /// Runs statements without parameters or results (transaction control, DDL).
    pub fn batch(&self, sql: &str) -> Result<(), StoreError> {
        match self {
            Conn::Lite(c) => Ok(c.execute_batch(sql)?),
            Conn::Pg(c) => {
                let mut c = c.borrow_mut();
                let client = c.client()?;
                Ok(off_runtime(|| client.batch_execute(sql))?)
            }
        }
    }

    /// Runs one statement; returns the number of rows it changed.
    pub fn execute(&self, sql: &'static str, params: &[Param<'_>]) -> Result<usize, StoreError> {
        match self {
            Conn::Lite(c) => Ok(c
                .prepare_cached(sql)?
                .execute(rusqlite::params_from_iter(params))?),
            Conn::Pg(c) => {
                let mut c = c.borrow_mut();
                let stmt = c.prepare(sql)?;
                let client = c.client()?;
                Ok(off_runtime(|| client.execute(&stmt, &pg_params(params)))? as usize)
            }
        }
    }

    /// Runs one statement built at run time (not prepared and kept).
    pub fn execute_text(&self, sql: &str, params: &[Param<'_>]) -> Result<usize, StoreError> {
        match self {
            Conn::Lite(c) => Ok(c.execute(sql, rusqlite::params_from_iter(params))?),
            Conn::Pg(c) => {
                let mut c = c.borrow_mut();
                let client = c.client()?;
                let sql = pg_sql(sql);
                Ok(off_runtime(|| client.execute(sql.as_str(), &pg_params(params)))? as usize)
            }
        }
    }

    /// The one row of a query built at run time, without parameters, read by `f`.
    pub fn one_text<T>(
        &self,
        sql: &str,
        f: impl FnOnce(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match self {
            Conn::Lite(c) => {
                let mut stmt = c.prepare(sql)?;
                let mut rows = stmt.query([])?;
                match rows.next()? {
                    Some(r) => f(&Row::Lite(r)),
                    None => Err(StoreError::Row(
                        "a query that returns one row returned none".into(),
                    )),
                }
            }
            Conn::Pg(c) => {
                let row = {
                    let mut c = c.borrow_mut();
                    let client = c.client()?;
                    off_runtime(|| client.query_one(sql, &[]))?
                };
                f(&Row::Pg(&row))
            }
        }
    }

    /// Hands each row of a query to `each` until it returns `false`.
    pub fn each(
        &self,
        sql: &'static str,
        params: &[Param<'_>],
        mut each: impl FnMut(&Row<'_>) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        match self {
            Conn::Lite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
                while let Some(r) = rows.next()? {
                    if !each(&Row::Lite(r))? {
                        break;
                    }
                }
                Ok(())
            }
            Conn::Pg(c) => {
                let rows = {
                    let mut c = c.borrow_mut();
                    let stmt = c.prepare(sql)?;
                    let client = c.client()?;
                    off_runtime(|| client.query(&stmt, &pg_params(params)))?
                };
                for r in &rows {
                    if !each(&Row::Pg(r))? {
                        break;
                    }
                }
                Ok(())
            }
        }
    }

    /// Every row of a query, each read by `f`.
    pub fn rows<T>(
        &self,
        sql: &'static str,
        params: &[Param<'_>],
        mut f: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        self.each(sql, params, |r| {
            out.push(f(r)?);
            Ok(true)
        })?;
        Ok(out)
    }

    /// The first row of a query read by `f`, if there is one.
    pub fn row<T>(
        &self,
        sql: &'static str,
        params: &[Param<'_>],
        f: impl FnOnce(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let mut f = Some(f);
        let mut out = None;
        self.each(sql, params, |r| {
            if let Some(f) = f.take() {
                out = Some(f(r)?);
            }
            Ok(false)
        })?;
        Ok(out)
    }

    /// The one row a query always returns (an aggregate), read by `f`.
    pub fn one<T>(
        &self,
        sql: &'static str,
        params: &[Param<'_>],
        f: impl FnOnce(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.row(sql, params, f)?
            .ok_or_else(|| StoreError::Row("a query that returns one row returned none".into()))
    }
}

impl PgConn {
    fn client(&mut self) -> Result<&mut postgres::Client, StoreError> {
        self.client
            .as_mut()
            .ok_or_else(|| StoreError::Config("the PostgreSQL connection is closed".into()))
    }
    fn prepare(&mut self, sql: &'static str) -> Result<postgres::Statement, StoreError> {
        if let Some(s) = self.prepared.get(sql) {
            return Ok(s.clone());
        }
        let client = self.client()?;
        let stmt = off_runtime(|| client.prepare(&pg_sql(sql)))?;
        self.prepared.insert(sql, stmt.clone());
        Ok(stmt)
    }
}

impl Drop for PgConn {
    fn drop(&mut self) {
        // The client owns a small runtime of its own, which must not be dropped on an
        // async worker.
        if let Some(client) = self.client.take() {
            off_runtime(move || drop(client));
        }
    }
}

/// Runs a blocking call of the PostgreSQL client, which drives a runtime of its own, from
/// wherever the store is called: as is off a runtime or on a blocking thread, through
/// `block_in_place` on a worker of the daemon's multi-threaded runtime, and on a scoped
/// thread on a current-thread runtime (where `block_in_place` is not allowed).
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Err(_) => f(),
        Ok(RuntimeFlavor::CurrentThread) => std::thread::scope(|s| {
            s.spawn(f)
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        }),
        Ok(_) => tokio::task::block_in_place(f),
    }
}

fn pg_params<'a>(params: &'a [Param<'a>]) -> Vec<&'a (dyn postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|p| p as &(dyn postgres::types::ToSql + Sync))
        .collect()
}

/// A statement as PostgreSQL spells it: `?N` → `$N`, `INSERT OR IGNORE` → `ON CONFLICT DO
/// NOTHING`. Question marks inside string literals are left alone.
pub fn pg_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut in_string = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_string = !in_string;
                out.push(c);
            }
            '?' if !in_string && chars.peek().is_some_and(|d| d.is_ascii_digit()) => out.push('$'),
            c => out.push(c),
        }
    }
    if let Some(rest) = out.strip_prefix("INSERT OR IGNORE ") {
        return format!("INSERT {rest} ON CONFLICT DO NOTHING");
    }
    out
}

/// Schema text as PostgreSQL spells it: 64-bit integers, rowid keys as identity columns,
/// bytes as `BYTEA`, and text compared bytewise (`COLLATE "C"`), as SQLite compares it, so
/// timestamps, ids and cursors order the same on both.
pub fn pg_ddl(sql: &str) -> String {
    sql.replace(
        "INTEGER PRIMARY KEY AUTOINCREMENT",
        "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    )
    .replace(
        "INTEGER PRIMARY KEY",
        "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    )
    .replace("INTEGER", "BIGINT")
    .replace("BLOB", "BYTEA")
    .replace(" TEXT", " TEXT COLLATE \"C\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_spelled_for_postgres_in_one_place() {
        assert_eq!(
            pg_sql("SELECT a FROM t WHERE b = ?1 AND c = '?2' AND d = ?12"),
            "SELECT a FROM t WHERE b = $1 AND c = '?2' AND d = $12"
        );
        assert_eq!(
            pg_sql("INSERT OR IGNORE INTO t (a) VALUES (?1)"),
            "INSERT INTO t (a) VALUES ($1) ON CONFLICT DO NOTHING"
        );
        assert_eq!(
            pg_ddl("id INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER NOT NULL, b BLOB, s TEXT"),
            "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, n BIGINT NOT NULL, b BYTEA, s TEXT COLLATE \"C\""
        );
    }
}
