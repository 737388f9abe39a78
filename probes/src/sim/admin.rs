//! The admin HTTP API: read and replace the faults at run time, read what clients sent.
//!
//! `GET /faults`, `PUT /faults` (a complete [`Faults`] JSON; missing fields take their
//! defaults, unknown fields are refused with 400), `GET /received`, `DELETE /received`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::faults::Faults;
use super::Shared;

/// The admin routes.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/faults", get(get_faults).put(put_faults))
        .route("/received", get(get_received).delete(clear_received))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such admin route; try GET/PUT /faults, GET/DELETE /received".into(),
            )
        })
        .with_state(shared)
}

async fn get_faults(State(shared): State<Arc<Shared>>) -> Json<Faults> {
    Json(shared.faults())
}

async fn put_faults(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    // Parsed by hand rather than with the Json extractor: curl -d sends a form content
    // type, and every bad body should be a 400 with serde's message.
    let faults = match serde_json::from_slice::<Faults>(&body) {
        Ok(faults) => faults,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid faults: {e}")),
    };
    match shared.replace_faults(faults.clone()) {
        Ok(()) => Json(faults).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, format!("invalid faults: {e}")),
    }
}

async fn get_received(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.recorder.snapshot()).into_response()
}

async fn clear_received(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.recorder.clear();
    StatusCode::NO_CONTENT
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}
