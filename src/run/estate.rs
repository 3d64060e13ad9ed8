//! Reads of the whole estate for the console: the responsibility matrix, scoped to a party
//! (rule 10). What depends only on the config and catalog in force is computed once per
//! loaded pair and kept until a reload replaces it.

use std::sync::{Arc, Mutex};

use super::App;
use crate::config::User;
use crate::policy;
use crate::policy::matrix::Matrix;
use crate::runbook::Catalog;

/// Values computed from one loaded config and catalog, dropped when they are replaced.
#[derive(Default)]
pub(super) struct EstateCache {
    matrix: Mutex<Option<(Arc<Catalog>, Arc<Matrix>)>>,
}

impl App {
    /// The responsibility matrix of every runbook in force (not scoped: for the caller to
    /// scope). Computed once per loaded config and catalog.
    fn whole_matrix(&self) -> Arc<Matrix> {
        let loaded = self.loaded();
        let mut cache = match self.estate.matrix.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        if let Some((catalog, m)) = cache.as_ref() {
            if Arc::ptr_eq(catalog, &loaded.catalog) {
                return m.clone();
            }
        }
        let m = Arc::new(policy::matrix::matrix(
            &loaded.config,
            loaded.catalog.runbooks.values(),
        ));
        *cache = Some((loaded.catalog.clone(), m.clone()));
        m
    }

    /// The responsibility matrix of the runbooks `user`'s party may see (the same rule as
    /// [`App::runbooks_for`]: it owns them or their targets, approves them, or may start them).
    pub fn matrix_for(&self, user: &User) -> Matrix {
        let whole = self.whole_matrix();
        let grants = &self.config().read_grants;
        Matrix {
            parties: whole.parties.clone(),
            rows: whole
                .rows
                .iter()
                .filter(|r| policy::may_see_run(&user.party, &r.concerns, grants))
                .cloned()
                .collect(),
        }
    }
}
