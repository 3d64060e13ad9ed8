//! What needs me (`/`).

use std::sync::Arc;

use axum::response::Redirect;
use axum::routing::get;
use axum::Router;

use crate::run::App;

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new().route("/", get(|| async { Redirect::to("/approvals") }))
}
