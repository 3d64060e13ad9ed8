//! Start a run (`\/start`).

use std::sync::Arc;

use axum::Router;

use crate::run::App;

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
}
