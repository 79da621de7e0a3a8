//! A stand-in for the external API the `user-registration` example calls, for the README's
//! "When a job fails" walk-through (seed 001): `POST /start-job` answers `{"job_id"}` while
//! the API is up and 503 while it is down; `GET /check-status/{job_id}` answers 200 (done).
//! `POST /admin/down` and `POST /admin/up` switch it; every request is printed with the
//! number of times its route was called, so a redrive that re-runs nothing it need not is
//! visible.
//!
//! Run: `cargo run -p durable-host --example registration-api -- [--listen ADDR] [--down]`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

#[derive(Default)]
struct Api {
    down: AtomicBool,
    calls: Mutex<BTreeMap<&'static str, u64>>,
}

impl Api {
    /// Counts a call of `route` and prints it with its answer.
    fn called(&self, route: &'static str, status: StatusCode, detail: &str) {
        let mut calls = self.calls.lock().expect("not poisoned");
        let n = calls.entry(route).or_default();
        *n += 1;
        println!("{route} #{n} -> {} {detail}", status.as_u16());
    }
}

type Reply = (StatusCode, Json<Value>);

async fn start_job(State(api): State<Arc<Api>>) -> Reply {
    if api.down.load(Ordering::SeqCst) {
        api.called("POST /start-job", StatusCode::SERVICE_UNAVAILABLE, "(down)");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "the job service is down"})),
        );
    }
    let job_id = format!("job-{}", ulid::Ulid::new());
    api.called("POST /start-job", StatusCode::OK, &job_id);
    (StatusCode::OK, Json(json!({"job_id": job_id})))
}

async fn check_status(State(api): State<Arc<Api>>, Path(job_id): Path<String>) -> Reply {
    api.called("GET /check-status", StatusCode::OK, &job_id);
    (
        StatusCode::OK,
        Json(json!({"job_id": job_id, "status": "done"})),
    )
}

async fn switch(api: &Api, down: bool) -> Reply {
    api.down.store(down, Ordering::SeqCst);
    let state = if down { "down" } else { "up" };
    println!("the API is now {state}");
    (StatusCode::OK, Json(json!({"state": state})))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut listen: SocketAddr = "127.0.0.1:9090".parse()?;
    let api = Arc::new(Api::default());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--down" => api.down.store(true, Ordering::SeqCst),
            "--listen" => {
                let addr = args
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--listen ADDR"))?;
                listen = addr.parse()?;
            }
            other => anyhow::bail!("unknown argument {other:?} (use --listen ADDR, --down)"),
        }
    }
    let app = Router::new()
        .route("/start-job", post(start_job))
        .route("/check-status/{job_id}", get(check_status))
        .route(
            "/admin/down",
            post(|State(api): State<Arc<Api>>| async move { switch(&api, true).await }),
        )
        .route(
            "/admin/up",
            post(|State(api): State<Arc<Api>>| async move { switch(&api, false).await }),
        )
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let state = if api.down.load(Ordering::SeqCst) {
        "down"
    } else {
        "up"
    };
    println!(
        "registration API on http://{}/ ({state})",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}
