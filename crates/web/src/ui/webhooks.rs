//! The administrators' webhooks pages: endpoints, their delivery log, dead letters, replay,
//! test events and secret rotation, over [`porteiro_core::flows::webhooks::Webhooks`].
//!
//! Like the rest of the UI, every form works without JavaScript and carries the CSRF token.
//! Creating an endpoint and rotating its secret are plain form posts answered with a page that
//! shows the new secret this once (`Cache-Control: no-store`): the secret never travels in a URL,
//! a redirect or a cookie, so loading any page again can no longer show it. The other forms are
//! enhanced by `porteiro.js` and answer a redirect with a notice.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::header::CACHE_CONTROL;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use chrono::{DateTime, NaiveDateTime, Utc};
use porteiro_core::Error;
use porteiro_core::domain::webhook::{
    ALL_EVENTS, DeliveryStatus, WebhookDelivery, WebhookEndpoint,
};
use porteiro_core::flows::webhooks::{
    DISABLED_FAILING, EndpointChange, EndpointRequest, MAX_DESCRIPTION_CHARS, ReplayRequest,
    subscribable_types,
};
use porteiro_core::service::Principal;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use uuid::Uuid;

use super::account::{form_caller, when};
use super::pages::nav;
use super::{Chrome, Failure, Messages, Ui, html};
use crate::state::AppState;

/// Deliveries per page of an endpoint's log.
const LOG_PAGE: u32 = 25;
/// Dead letters shown per page of the list.
const DEAD_PAGE: u32 = 25;

/// Notices a redirect may ask these pages to show (`?notice=`); anything else is ignored.
const NOTICES: &[&str] = &[
    "webhook_saved",
    "webhook_unchanged",
    "webhook_deleted",
    "webhook_test_sent",
    "webhook_replayed",
];

/// Rotation overlaps offered by the form, in seconds (the service accepts 0 to 7 days).
const OVERLAPS: &[(i64, &str)] = &[
    (0, "webhooks.overlap_none"),
    (3600, "webhooks.overlap_hour"),
    (86_400, "webhooks.overlap_day"),
    (604_800, "webhooks.overlap_week"),
];

/// The query of the webhooks pages, read leniently: anything malformed is ignored.
#[derive(Debug, Default, Deserialize)]
pub(super) struct WebhooksQuery {
    notice: Option<String>,
    queued: Option<String>,
    before: Option<String>,
}

impl WebhooksQuery {
    fn before(&self) -> Option<i64> {
        self.before
            .as_deref()
            .and_then(|b| b.parse::<i64>().ok())
            .filter(|b| *b > 0)
    }

    fn notice(&self, t: Messages) -> Option<String> {
        let code = self.notice.as_deref()?;
        if !NOTICES.contains(&code) {
            return None;
        }
        if code == "webhook_replayed" {
            let queued = self
                .queued
                .as_deref()
                .and_then(|q| q.parse::<u64>().ok())
                .unwrap_or(0);
            return Some(if queued == 0 {
                t.get("notice.webhook_replayed_none").to_owned()
            } else {
                t.fmt("notice.webhook_replayed", &[("count", &queued.to_string())])
            });
        }
        Some(t.get(&format!("notice.{code}")).to_owned())
    }
}

/// A posted form as its name/value pairs (checkboxes repeat a name).
struct Fields(Vec<(String, String)>);

impl Fields {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self, name: &str) -> String {
        self.get(name).unwrap_or_default().trim().to_owned()
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn csrf(&self) -> &str {
        self.get("csrf_token").unwrap_or_default()
    }

    fn checked(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// One event type of the subscription form.
struct EventChoice {
    value: &'static str,
    label: String,
    checked: bool,
}

/// The values of an endpoint form (create or edit).
struct EndpointForm {
    url: String,
    description: String,
    all_events: bool,
    events: Vec<EventChoice>,
    enabled: bool,
}

impl EndpointForm {
    fn new(t: Messages, url: String, description: String, types: &[String], enabled: bool) -> Self {
        let all_events = types.is_empty() || types.iter().any(|e| e == ALL_EVENTS);
        Self {
            url,
            description,
            all_events,
            events: subscribable_types()
                .map(|value| EventChoice {
                    value,
                    label: t.event(value),
                    checked: !all_events && types.iter().any(|e| e == value),
                })
                .collect(),
            enabled,
        }
    }

    fn blank(t: Messages) -> Self {
        Self::new(t, String::new(), String::new(), &[], true)
    }

    fn of(t: Messages, e: &WebhookEndpoint) -> Self {
        Self::new(
            t,
            e.url.clone(),
            e.description.clone(),
            &e.event_types,
            e.enabled,
        )
    }

    /// What was posted, to show again with an error.
    fn posted(t: Messages, f: &Fields) -> Self {
        let chosen = if f.get("scope") == Some("some") {
            f.all("event_types")
        } else {
            Vec::new()
        };
        let mut form = Self::new(
            t,
            f.text("url"),
            f.text("description"),
            &chosen,
            f.checked("enabled"),
        );
        // "Some events" with none ticked stays "some": the error says to tick one.
        form.all_events = f.get("scope") != Some("some");
        form
    }

    /// The posted subscription: every type, or the ticked ones.
    fn posted_types(f: &Fields) -> Vec<String> {
        if f.get("scope") == Some("some") {
            f.all("event_types")
        } else {
            vec![ALL_EVENTS.to_owned()]
        }
    }
}

/// How an endpoint's subscription reads.
fn subscription(t: Messages, types: &[String]) -> String {
    if types.iter().any(|e| e == ALL_EVENTS) {
        t.get("webhooks.all_events").to_owned()
    } else {
        types
            .iter()
            .map(|e| t.event(e))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// An endpoint's state, as a list or the details show it.
struct EndpointState {
    enabled: bool,
    /// Why it is off: the server's reason when the server disabled it.
    disabled_note: String,
    failing_since: Option<(String, String)>,
    previous_until: Option<(String, String)>,
}

impl EndpointState {
    fn of(t: Messages, e: &WebhookEndpoint, now: DateTime<Utc>) -> Self {
        let disabled_note = match e.disabled_reason.as_deref() {
            None => t.get("webhooks.disabled").to_owned(),
            Some(DISABLED_FAILING) => t.get("webhooks.disabled_failing").to_owned(),
            Some(other) => t.fmt("webhooks.disabled_by_server", &[("reason", other)]),
        };
        Self {
            enabled: e.enabled,
            disabled_note,
            failing_since: e.failing_since.map(|at| when(t, at)),
            previous_until: e
                .previous_secret_until
                .filter(|u| *u > now)
                .map(|u| when(t, u)),
        }
    }
}

struct EndpointRow {
    id: Uuid,
    url: String,
    description: String,
    events: String,
    state: EndpointState,
    created: (String, String),
}

struct DeliveryRow {
    endpoint_id: Uuid,
    endpoint_url: String,
    event_id: i64,
    event: String,
    event_type: String,
    status: String,
    status_class: &'static str,
    attempts: i32,
    code: String,
    latency: String,
    error: String,
    created: (String, String),
    last_attempt: Option<(String, String)>,
    next_attempt: Option<(String, String)>,
    completed: Option<(String, String)>,
}

impl DeliveryRow {
    fn of(t: Messages, d: WebhookDelivery, endpoint_url: String) -> Self {
        let (status, status_class) = match d.status {
            DeliveryStatus::Pending => ("webhooks.status_pending", "warn"),
            DeliveryStatus::Delivered => ("webhooks.status_delivered", "ok"),
            DeliveryStatus::Dead => ("webhooks.status_dead", "off"),
        };
        Self {
            endpoint_id: d.endpoint_id,
            endpoint_url,
            event_id: d.event_id,
            event: t.event(&d.event_type),
            event_type: d.event_type,
            status: t.get(status).to_owned(),
            status_class,
            attempts: d.attempts,
            code: d
                .last_status_code
                .map(|c| c.to_string())
                .unwrap_or_default(),
            latency: d
                .last_latency_ms
                .map(|ms| t.fmt("webhooks.ms", &[("ms", &ms.to_string())]))
                .unwrap_or_default(),
            error: d.last_error.unwrap_or_default(),
            created: when(t, d.created_at),
            last_attempt: d.last_attempt_at.map(|at| when(t, at)),
            next_attempt: d
                .next_attempt_at
                .filter(|_| d.status == DeliveryStatus::Pending)
                .map(|at| when(t, at)),
            completed: d.completed_at.map(|at| when(t, at)),
        }
    }
}

#[derive(Template)]
#[template(path = "ui/webhooks.html")]
struct ListPage {
    c: Chrome,
    t: Messages,
    endpoints: Vec<EndpointRow>,
    form: EndpointForm,
    max_description: usize,
    dead: Vec<DeliveryRow>,
    dead_older: Option<i64>,
    dead_paged: bool,
    notice: Option<String>,
    create_error: Option<String>,
    dead_error: Option<String>,
}

/// Which part of the list page an error belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListSection {
    Create,
    DeadLetters,
}

async fn render_list(
    s: &AppState,
    ui: &Ui,
    p: &Principal,
    q: &WebhooksQuery,
    form: Option<EndpointForm>,
    error: Option<(ListSection, Failure)>,
) -> Response {
    let t = ui.t;
    let before = q.before();
    let (endpoints, dead) = match (
        s.webhooks.list(p).await,
        s.webhooks.dead_letters(p, before, DEAD_PAGE).await,
    ) {
        (Ok(e), Ok(d)) => (e, d),
        (Err(e), _) | (_, Err(e)) => return ui.refuse(s, Failure::from_error(t, &e)),
    };
    let now = s.webhooks.now();
    let url_of = |id: Uuid| {
        endpoints
            .iter()
            .find(|e| e.id == id)
            .map(|e| e.url.clone())
            .unwrap_or_default()
    };
    let dead_older = (u32::try_from(dead.len()).is_ok_and(|n| n >= DEAD_PAGE))
        .then(|| dead.last().map(|d| d.id))
        .flatten();
    let dead = dead
        .into_iter()
        .map(|d| {
            let url = url_of(d.endpoint_id);
            DeliveryRow::of(t, d, url)
        })
        .collect();
    let rows = endpoints
        .iter()
        .map(|e| EndpointRow {
            id: e.id,
            url: e.url.clone(),
            description: e.description.clone(),
            events: subscription(t, &e.event_types),
            state: EndpointState::of(t, e, now),
            created: when(t, e.created_at),
        })
        .collect();
    let status = error.as_ref().map_or(StatusCode::OK, |(_, f)| f.status);
    let pick = |want: ListSection| {
        error
            .as_ref()
            .filter(|(section, _)| *section == want)
            .map(|(_, f)| f.message.clone())
    };
    let mut headers = HeaderMap::new();
    let page = ListPage {
        c: ui.chrome(s, &mut headers, nav(p), "webhooks"),
        t,
        endpoints: rows,
        form: form.unwrap_or_else(|| EndpointForm::blank(t)),
        max_description: MAX_DESCRIPTION_CHARS,
        dead,
        dead_older,
        dead_paged: before.is_some(),
        notice: q.notice(t),
        create_error: pick(ListSection::Create),
        dead_error: pick(ListSection::DeadLetters),
    };
    html(status, headers, &page)
}

/// `GET /ui/admin/webhooks`: the endpoints, the form to add one, and the dead letters
/// (administrators only).
pub(super) async fn list_page(
    State(s): State<AppState>,
    Query(q): Query<WebhooksQuery>,
    ui: Ui,
) -> Response {
    let Some(p) = ui.principal(&s).await else {
        return ui.to_login();
    };
    render_list(&s, &ui, &p, &q, None, None).await
}

#[derive(Template)]
#[template(path = "ui/webhooks_secret.html")]
struct SecretPage {
    c: Chrome,
    t: Messages,
    heading: &'static str,
    id: Uuid,
    url: String,
    secret: String,
    /// After a rotation: how long the previous secret keeps signing.
    previous: Option<String>,
}

/// The page that shows a new secret, this once. Never cached, never redirected to.
fn secret_page(
    s: &AppState,
    ui: &Ui,
    p: &Principal,
    endpoint: &WebhookEndpoint,
    secret: &SecretString,
    rotated: bool,
) -> Response {
    let t = ui.t;
    let now = s.webhooks.now();
    let previous = rotated.then(
        || match endpoint.previous_secret_until.filter(|u| *u > now) {
            Some(until) => t.fmt("webhooks.previous_until", &[("time", &when(t, until).0)]),
            None => t.get("webhooks.previous_ended").to_owned(),
        },
    );
    let mut headers = HeaderMap::new();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let page = SecretPage {
        c: ui.chrome(s, &mut headers, nav(p), "webhooks"),
        t,
        heading: if rotated {
            "webhooks.secret_rotated_heading"
        } else {
            "webhooks.created_heading"
        },
        id: endpoint.id,
        url: endpoint.url.clone(),
        secret: secret.expose_secret().to_owned(),
        previous,
    };
    html(StatusCode::OK, headers, &page)
}

/// The service's URL refusal in the user's language: a malformed URL, or one whose address
/// the SSRF policy refuses (the syntax check alone tells them apart).
fn url_failure(t: Messages, raw: &str, err: &Error) -> Failure {
    let f = Failure::from_error(t, err);
    if f.code == "invalid_url" && porteiro_core::net::parse_webhook_url(raw).is_ok() {
        Failure {
            message: t.error("webhook_url_refused"),
            ..f
        }
    } else {
        f
    }
}

/// `POST /ui/admin/webhooks`: adds an endpoint and shows its secret once.
pub(super) async fn create(
    State(s): State<AppState>,
    ui: Ui,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let f = Fields(pairs);
    let p = match form_caller(&s, &ui, f.csrf()).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let url = f.text("url");
    let request = EndpointRequest {
        url: url.clone(),
        event_types: Some(EndpointForm::posted_types(&f)),
        description: Some(f.text("description")),
        enabled: Some(f.checked("enabled")),
    };
    match s.webhooks.create(&p, request).await {
        Ok((endpoint, secret)) => secret_page(&s, &ui, &p, &endpoint, &secret, false),
        Err(e) => {
            let failure = url_failure(ui.t, &url, &e);
            if ui.wants_json {
                return ui.json_failure(&failure, HeaderMap::new());
            }
            let form = EndpointForm::posted(ui.t, &f);
            let q = WebhooksQuery::default();
            render_list(
                &s,
                &ui,
                &p,
                &q,
                Some(form),
                Some((ListSection::Create, failure)),
            )
            .await
        }
    }
}

#[derive(Template)]
#[template(path = "ui/webhooks_endpoint.html")]
struct EndpointPage {
    c: Chrome,
    t: Messages,
    id: Uuid,
    url: String,
    description: String,
    events: String,
    state: EndpointState,
    created: (String, String),
    updated: (String, String),
    form: EndpointForm,
    max_description: usize,
    overlaps: Vec<(i64, String, bool)>,
    replay_from: String,
    replay_to: String,
    deliveries: Vec<DeliveryRow>,
    older: Option<i64>,
    paged: bool,
    notice: Option<String>,
    edit_error: Option<String>,
    test_error: Option<String>,
    rotate_error: Option<String>,
    delete_error: Option<String>,
    replay_error: Option<String>,
}

/// Which form of the endpoint page an error belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Edit,
    Test,
    Rotate,
    Delete,
    Replay,
}

/// What a failed form posted, to show it again.
#[derive(Default)]
struct Posted {
    form: Option<EndpointForm>,
    replay: Option<(String, String)>,
}

async fn render_endpoint(
    s: &AppState,
    ui: &Ui,
    p: &Principal,
    id: Uuid,
    q: &WebhooksQuery,
    posted: Posted,
    error: Option<(Section, Failure)>,
) -> Response {
    let t = ui.t;
    let before = q.before();
    let (endpoint, deliveries) = match s.webhooks.get(p, id).await {
        Ok(e) => match s.webhooks.deliveries(p, id, before, LOG_PAGE).await {
            Ok(d) => (e, d),
            Err(e) => return ui.refuse(s, Failure::from_error(t, &e)),
        },
        Err(e) => return ui.refuse(s, Failure::from_error(t, &e)),
    };
    let now = s.webhooks.now();
    let older = (u32::try_from(deliveries.len()).is_ok_and(|n| n >= LOG_PAGE))
        .then(|| deliveries.last().map(|d| d.id))
        .flatten();
    let deliveries = deliveries
        .into_iter()
        .map(|d| DeliveryRow::of(t, d, endpoint.url.clone()))
        .collect();
    let status = error.as_ref().map_or(StatusCode::OK, |(_, f)| f.status);
    let pick = |want: Section| {
        error
            .as_ref()
            .filter(|(section, _)| *section == want)
            .map(|(_, f)| f.message.clone())
    };
    let (replay_from, replay_to) = posted.replay.unwrap_or_default();
    let mut headers = HeaderMap::new();
    let page = EndpointPage {
        c: ui.chrome(s, &mut headers, nav(p), "webhooks"),
        t,
        id: endpoint.id,
        url: endpoint.url.clone(),
        description: endpoint.description.clone(),
        events: subscription(t, &endpoint.event_types),
        state: EndpointState::of(t, &endpoint, now),
        created: when(t, endpoint.created_at),
        updated: when(t, endpoint.updated_at),
        form: posted
            .form
            .unwrap_or_else(|| EndpointForm::of(t, &endpoint)),
        max_description: MAX_DESCRIPTION_CHARS,
        overlaps: OVERLAPS
            .iter()
            .map(|(secs, key)| (*secs, t.get(key).to_owned(), *secs == 86_400))
            .collect(),
        replay_from,
        replay_to,
        deliveries,
        older,
        paged: before.is_some(),
        notice: q.notice(t),
        edit_error: pick(Section::Edit),
        test_error: pick(Section::Test),
        rotate_error: pick(Section::Rotate),
        delete_error: pick(Section::Delete),
        replay_error: pick(Section::Replay),
    };
    html(status, headers, &page)
}

/// `GET /ui/admin/webhooks/{id}`: one endpoint, its forms and its delivery log.
pub(super) async fn endpoint_page(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<WebhooksQuery>,
    ui: Ui,
) -> Response {
    let Some(p) = ui.principal(&s).await else {
        return ui.to_login();
    };
    // Not an id: the same answer as an unknown one, once the caller is known to be an admin.
    let id = Uuid::parse_str(&id).unwrap_or(Uuid::nil());
    render_endpoint(&s, &ui, &p, id, &q, Posted::default(), None).await
}

/// The answer to an endpoint form: on to `to` on success, or the error in its section.
async fn endpoint_outcome(
    s: &AppState,
    ui: &Ui,
    p: &Principal,
    id: Uuid,
    result: Result<String, Failure>,
    section: Section,
    posted: Posted,
) -> Response {
    match result {
        Ok(to) => ui.done(HeaderMap::new(), &to),
        Err(f) if ui.wants_json => ui.json_failure(&f, HeaderMap::new()),
        Err(f) => {
            let q = WebhooksQuery::default();
            render_endpoint(s, ui, p, id, &q, posted, Some((section, f))).await
        }
    }
}

/// The caller and endpoint id of a form post on `/ui/admin/webhooks/{id}/…`.
async fn endpoint_caller(
    s: &AppState,
    ui: &Ui,
    id: &str,
    f: &Fields,
) -> Result<(Principal, Uuid), Response> {
    let p = form_caller(s, ui, f.csrf()).await?;
    // A malformed id is looked up as the nil id: unknown to administrators, forbidden to others.
    Ok((p, Uuid::parse_str(id).unwrap_or(Uuid::nil())))
}

fn sorted(types: &[String]) -> Vec<&str> {
    let mut v: Vec<&str> = types.iter().map(String::as_str).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// `POST /ui/admin/webhooks/{id}`: saves the edit form (only what changed).
pub(super) async fn update(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ui: Ui,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let f = Fields(pairs);
    let (p, id) = match endpoint_caller(&s, &ui, &id, &f).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let current = match s.webhooks.get(&p, id).await {
        Ok(e) => e,
        Err(e) => return ui.refuse(&s, Failure::from_error(ui.t, &e)),
    };
    let url = f.text("url");
    let types = EndpointForm::posted_types(&f);
    let description = f.text("description");
    let enabled = f.checked("enabled");
    let change = EndpointChange {
        url: (url != current.url).then(|| url.clone()),
        event_types: (sorted(&types) != sorted(&current.event_types)).then_some(types),
        description: (description != current.description).then_some(description),
        enabled: (enabled != current.enabled).then_some(enabled),
    };
    let unchanged = change.url.is_none()
        && change.event_types.is_none()
        && change.description.is_none()
        && change.enabled.is_none();
    let result = if unchanged {
        Ok(format!("/ui/admin/webhooks/{id}?notice=webhook_unchanged"))
    } else {
        s.webhooks
            .update(&p, id, change)
            .await
            .map(|_| format!("/ui/admin/webhooks/{id}?notice=webhook_saved"))
            .map_err(|e| url_failure(ui.t, &url, &e))
    };
    let posted = Posted {
        form: Some(EndpointForm::posted(ui.t, &f)),
        replay: None,
    };
    endpoint_outcome(&s, &ui, &p, id, result, Section::Edit, posted).await
}

/// `POST /ui/admin/webhooks/{id}/test`: queues a test event for this endpoint.
pub(super) async fn send_test(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ui: Ui,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let f = Fields(pairs);
    let (p, id) = match endpoint_caller(&s, &ui, &id, &f).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let result = s
        .webhooks
        .send_test(&p, id)
        .await
        .map(|_| format!("/ui/admin/webhooks/{id}?notice=webhook_test_sent"))
        .map_err(|e| Failure::from_error(ui.t, &e));
    endpoint_outcome(&s, &ui, &p, id, result, Section::Test, Posted::default()).await
}

/// `POST /ui/admin/webhooks/{id}/rotate-secret`: a new secret, shown once.
pub(super) async fn rotate_secret(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ui: Ui,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let f = Fields(pairs);
    let (p, id) = match endpoint_caller(&s, &ui, &id, &f).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    // A value the form does not offer is passed on, for the service to refuse.
    let overlap = match f.get("overlap_seconds").map(str::trim) {
        None | Some("") => None,
        Some(v) => Some(v.parse::<i64>().unwrap_or(-1)),
    };
    match s.webhooks.rotate_secret(&p, id, overlap).await {
        Ok((endpoint, secret)) => secret_page(&s, &ui, &p, &endpoint, &secret, true),
        Err(e) => {
            let f = Failure::from_error(ui.t, &e);
            endpoint_outcome(&s, &ui, &p, id, Err(f), Section::Rotate, Posted::default()).await
        }
    }
}

/// `POST /ui/admin/webhooks/{id}/delete`: needs the confirmation box ticked.
pub(super) async fn delete(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ui: Ui,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let f = Fields(pairs);
    let (p, id) = match endpoint_caller(&s, &ui, &id, &f).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let result = if f.get("confirm") == Some("yes") {
        s.webhooks
            .delete(&p, id)
            .await
            .map(|()| "/ui/admin/webhooks?notice=webhook_deleted".to_owned())
            .map_err(|e| Failure::from_error(ui.t, &e))
    } else {
        // Checked first for administrators only: others get the page's usual refusal.
        match s.webhooks.get(&p, id).await {
            Ok(_) => {
                Err(Failure::new(ui.t, StatusCode::BAD_REQUEST, "confirm_delete").on("confirm"))
            }
            Err(e) => Err(Failure::from_error(ui.t, &e)),
        }
    };
    endpoint_outcome(&s, &ui, &p, id, result, Section::Delete, Posted::default()).await
}

/// A time from the replay form: `datetime-local` (taken as UTC, as the page shows times) or
/// RFC 3339.
pub(super) fn parse_time(raw: &str) -> Option<DateTime<Utc>> {
    let raw = raw.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Some(t.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|fmt| NaiveDateTime::parse_from_str(raw, fmt).ok())
        .map(|n| n.and_utc())
}

/// `POST /ui/admin/webhooks/{id}/replay`: one event again (`event_id`, from the dead letters),
/// or every subscribed event of a time range (`from`, `to`).
pub(super) async fn replay(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ui: Ui,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let f = Fields(pairs);
    let (p, id) = match endpoint_caller(&s, &ui, &id, &f).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let t = ui.t;
    let from_list = f.get("return") == Some("list");
    let invalid = || Failure::new(t, StatusCode::BAD_REQUEST, "invalid_replay");
    let request = if let Some(event_id) = f.get("event_id") {
        match event_id.trim().parse::<i64>() {
            Ok(event_id) => Ok(ReplayRequest {
                event_id: Some(event_id),
                ..ReplayRequest::default()
            }),
            Err(_) => Err(invalid()),
        }
    } else {
        let (from, to) = (f.text("from"), f.text("to"));
        match (parse_time(&from), parse_time(&to)) {
            (Some(from), Some(to)) => Ok(ReplayRequest {
                event_id: None,
                from: Some(from),
                to: Some(to),
            }),
            _ => Err(invalid().on(if parse_time(&from).is_none() {
                "from"
            } else {
                "to"
            })),
        }
    };
    let result = match request {
        Ok(request) => s
            .webhooks
            .replay(&p, id, request)
            .await
            .map_err(|e| Failure::from_error(t, &e)),
        Err(f) => Err(f),
    };
    let back = if from_list {
        "/ui/admin/webhooks".to_owned()
    } else {
        format!("/ui/admin/webhooks/{id}")
    };
    match result {
        Ok(queued) => ui.done(
            HeaderMap::new(),
            &format!("{back}?notice=webhook_replayed&queued={queued}"),
        ),
        Err(failure) if ui.wants_json => ui.json_failure(&failure, HeaderMap::new()),
        Err(failure) if from_list => {
            let q = WebhooksQuery::default();
            render_list(
                &s,
                &ui,
                &p,
                &q,
                None,
                Some((ListSection::DeadLetters, failure)),
            )
            .await
        }
        Err(failure) => {
            let posted = Posted {
                form: None,
                replay: Some((f.text("from"), f.text("to"))),
            };
            endpoint_outcome(&s, &ui, &p, id, Err(failure), Section::Replay, posted).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_times_are_utc() {
        let at = parse_time("2025-03-04T05:06").expect("datetime-local");
        assert_eq!(at.to_rfc3339(), "2025-03-04T05:06:00+00:00");
        let at = parse_time("2025-03-04T05:06:07-03:00").expect("rfc 3339");
        assert_eq!(at.to_rfc3339(), "2025-03-04T08:06:07+00:00");
        assert!(parse_time("yesterday").is_none());
        assert!(parse_time("").is_none());
    }
}
