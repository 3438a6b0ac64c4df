//! A minimal axum server with the same runtime and HTTP stack as Porteiro: the bare ceiling the
//! benchmark compares authenticated requests against. `GET /` answers a small JSON body.
//! `POST /hook` answers 204 to anything: the webhook receiver of the delivery benchmark.
//! Listens on 127.0.0.1:`BASELINE_PORT` (default 18090).

use axum::Router;
use axum::http::StatusCode;
use axum::http::header;
use axum::routing::{get, post};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("BASELINE_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(18090);
    let app = Router::new()
        .route(
            "/",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    r#"{"status":"success","data":{"hello":"world"}}"#,
                )
            }),
        )
        .route("/hook", post(|| async { StatusCode::NO_CONTENT }));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await
}
