//! `/` (welcome page and API reference), `/api/openapi.json`, `/assets/docs.css`.
//!
//! The reference is rendered on the server from the OpenAPI document the code generates, with
//! assets compiled into the binary: no CDN, no script, so it works offline and under a strict CSP.

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use utoipa::openapi::OpenApi;

use crate::state::AppState;

/// One operation of the reference.
#[derive(Debug, Clone)]
pub struct Operation {
    /// HTTP method, upper case.
    pub method: &'static str,
    /// Path template.
    pub path: String,
    /// One-line summary.
    pub summary: String,
    /// Needs a bearer token.
    pub secured: bool,
}

/// A group of operations sharing a tag.
#[derive(Debug, Clone)]
pub struct Section {
    /// Tag name.
    pub tag: String,
    /// Operations.
    pub operations: Vec<Operation>,
}

#[derive(Template)]
#[template(path = "docs.html")]
struct DocsPage<'a> {
    version: &'a str,
    sections: &'a [Section],
}

/// The pre-rendered documentation.
#[derive(Debug, Clone)]
pub struct Docs {
    spec: Arc<str>,
    page: Arc<str>,
}

impl Docs {
    /// Serialises the spec and renders the page once, at start-up.
    ///
    /// # Panics
    /// If the built-in template fails to render, which is a bug caught by the tests.
    #[must_use]
    pub fn new(api: &OpenApi, version: &str) -> Self {
        let spec = api
            .to_pretty_json()
            .expect("invariant: the generated OpenAPI document serialises");
        let mut sections: Vec<Section> = Vec::new();
        for (path, item) in &api.paths.paths {
            let ops = [
                ("GET", &item.get),
                ("POST", &item.post),
                ("PUT", &item.put),
                ("PATCH", &item.patch),
                ("DELETE", &item.delete),
            ];
            for (method, op) in ops {
                let Some(op) = op else { continue };
                let tag = op
                    .tags
                    .as_ref()
                    .and_then(|t| t.first())
                    .cloned()
                    .unwrap_or_else(|| "other".to_owned());
                let operation = Operation {
                    method,
                    path: path.clone(),
                    summary: op
                        .summary
                        .clone()
                        .or_else(|| op.description.clone())
                        .unwrap_or_default(),
                    secured: op.security.as_ref().is_some_and(|s| !s.is_empty()),
                };
                match sections.iter_mut().find(|s| s.tag == tag) {
                    Some(section) => section.operations.push(operation),
                    None => sections.push(Section {
                        tag,
                        operations: vec![operation],
                    }),
                }
            }
        }
        let order = [
            "compact",
            "auth",
            "devices",
            "users",
            "audit",
            "webhooks",
            "maintenance",
            "tokens",
            "health",
        ];
        sections.sort_by_key(|s| {
            order
                .iter()
                .position(|o| *o == s.tag)
                .unwrap_or(order.len())
        });
        let page = DocsPage {
            version,
            sections: &sections,
        }
        .render()
        .expect("invariant: the docs template renders");
        Self {
            spec: spec.into(),
            page: page.into(),
        }
    }
}

pub(crate) fn router(docs: Docs) -> Router<AppState> {
    let spec = docs.spec.clone();
    let page = docs.page.clone();
    Router::new()
        .route(
            "/",
            get(move |State(_): State<AppState>| async move { Html(page.to_string()) }),
        )
        .route(
            "/api/openapi.json",
            get(move || async move {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    spec.to_string(),
                )
            }),
        )
        .route("/assets/docs.css", get(stylesheet))
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../static/docs.css"),
    )
}
