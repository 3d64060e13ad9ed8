//! `tandem store migrate --to URL`: the whole state of an SQLite store copied into an empty
//! PostgreSQL one in one transaction, row for row (ids, line numbers, the audit chain's
//! sequence numbers and hashes unchanged, so every checkpoint signed over the old log holds
//! over the new one), then checked: same rows per table, and the copied chain verifies to
//! the same head.

use super::db::{Conn, Param};
use super::{Store, StoreError};

/// Each table in an order its foreign keys accept, with its columns. `runs.parent_run` is
/// set in a second pass (a follow-up may share its parent's timestamp).
const TABLES: &[(&str, &str)] = &[
    ("runs", "id, runbook, version, status, initiator_user, initiator_party, created_at, started_at, finished_at, digest, plan, error, break_glass, reason, slot, ref, lease_node, lease_until, lease_token"),
    ("host_results", "run_id, host, position, status, exit_code, started_at, finished_at, error"),
    ("gates", "run_id, gate, reason, host, requirements, status, requested_at, expires_at, decided_at"),
    ("decisions", "id, run_id, gate, party, \"user\", decision, comment, digest, ts"),
    ("reviews", "run_id, parties, status, requested_at, reviewed_by, comment, reviewed_at"),
    ("schedule_state", "runbook, last_slot"),
    ("standing_approvals", "id, runbook, digest, party, \"user\", granted_at, until, comment"),
    ("freezes", "host, party, reason, frozen_by, frozen_at"),
    ("log_chunks", "id, run_id, host, stream, first_line, last_line, ts, bytes"),
    ("actions", "id, run_id, host, kind, target, status, started_at, finished_at"),
    ("audit", "seq, ts, actor, run_id, event, detail, prev_hash, hash"),
];

/// Tables whose ids PostgreSQL numbers itself: its sequences continue after the copied ids.
const NUMBERED: &[&str] = &["decisions", "standing_approvals", "log_chunks", "actions"];

/// What a copy moved.
#[derive(Debug, Clone, PartialEq)]
pub struct Copied {
    /// Rows per table, in copy order.
    pub tables: Vec<(&'static str, u64)>,
    /// The audit chain's length and head hash, the same on both sides.
    pub audit_records: u64,
    pub audit_head: String,
}

/// An owned value read from SQLite.
enum Value {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    fn param(&self) -> Param<'_> {
        match self {
            Value::Null => Param::Null,
            Value::Int(i) => Param::Int(*i),
            Value::Text(s) => Param::Text(s),
            Value::Blob(b) => Param::Blob(b),
        }
    }
}

impl Store {
    /// Copies this (SQLite) store into `to`, an empty PostgreSQL store, and checks the copy.
    pub fn copy_into(&self, to: &Store) -> Result<Copied, StoreError> {
        let source = self.lock()?;
        let Conn::Lite(from) = &*source else {
            return Err(StoreError::Config(
                "store migrate copies an SQLite state; this store is not one".into(),
            ));
        };
        if to.audit_len()? > 0 || !to.runs(None, 1)?.is_empty() {
            return Err(StoreError::Config(
                "store migrate: the target database is not empty; nothing was copied".into(),
            ));
        }
        let tables = to.tx(|tx| {
            let mut counts = Vec::new();
            for (table, columns) in TABLES {
                let n = columns.split(',').count();
                let marks: Vec<String> = (1..=n).map(|i| format!("?{i}")).collect();
                let insert = format!(
                    "INSERT INTO {table} ({columns}) VALUES ({})",
                    marks.join(", ")
                );
                let mut stmt = from.prepare(&format!("SELECT {columns} FROM {table} ORDER BY rowid"))?;
                let mut rows = stmt.query([])?;
                let mut copied = 0u64;
                while let Some(row) = rows.next()? {
                    let mut values = Vec::with_capacity(n);
                    for i in 0..n {
                        use rusqlite::types::ValueRef;
                        values.push(match row.get_ref(i)? {
                            ValueRef::Null => Value::Null,
                            ValueRef::Integer(v) => Value::Int(v),
                            ValueRef::Real(_) => {
                                return Err(StoreError::Row(format!(
                                    "{table}: a real number where tandem stores none"
                                )))
                            }
                            ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
                        });
                    }
                    let params: Vec<Param<'_>> = values.iter().map(Value::param).collect();
                    tx.tx.execute_text(&insert, &params)?;
                    copied += 1;
                }
                counts.push((*table, copied));
            }
            let mut stmt = from.prepare("SELECT id, parent_run FROM runs WHERE parent_run IS NOT NULL")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let (id, parent): (String, String) = (row.get(0)?, row.get(1)?);
                tx.tx.execute_text(
                    "UPDATE runs SET parent_run = ?2 WHERE id = ?1",
                    &[Param::Text(&id), Param::Text(&parent)],
                )?;
            }
            for table in NUMBERED {
                tx.tx.batch(&format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
                ))?;
            }
            Ok(counts)
        })?;
        drop(source);
        // The check: the same rows on both sides, and the copied chain verifies to the
        // source's head.
        for (table, copied) in &tables {
            let sql = format!("SELECT COUNT(*) FROM {table}");
            let there: i64 = to.lock()?.one_text(&sql, |r| r.get(0))?;
            if there as u64 != *copied {
                return Err(StoreError::Config(format!(
                    "store migrate: {table} has {there} rows after copying {copied}"
                )));
            }
        }
        let head = |store: &Store| -> Result<(u64, String), StoreError> {
            let mut after = 0;
            let mut all = Vec::new();
            loop {
                let page = store.audit_records(after, 10_000)?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                all.extend(page);
            }
            let verified = crate::audit::verify(all.into_iter().map(Ok)).map_err(|b| {
                StoreError::Config(format!(
                    "store migrate: the audit chain breaks at {}: {}",
                    b.seq, b.reason
                ))
            })?;
            Ok((verified.count, verified.head))
        };
        let (n_from, head_from) = head(self)?;
        let (n_to, head_to) = head(to)?;
        if (n_from, &head_from) != (n_to, &head_to) {
            return Err(StoreError::Config(format!(
                "store migrate: the copied audit chain ends at {n_to} {head_to}, the source at {n_from} {head_from}"
            )));
        }
        Ok(Copied {
            tables,
            audit_records: n_to,
            audit_head: head_to,
        })
    }
}
