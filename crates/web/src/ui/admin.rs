//! The administrators' console under `/ui/admin`: the users (a searchable, paged list, and one
//! account's page with its profile, roles, sessions, recent security events and the
//! administrators' actions), roles and permissions, and the audit log with its CSV export.
//!
//! Each page is shown only to callers holding its permission: `users:read` for the users,
//! `audit:read` for the audit log, any permission that administers access (see [`sees_roles`])
//! for roles and permissions. Each control is shown only when the caller's permissions make it
//! work (a role is offered only to someone who holds all it grants, as the RBAC service demands),
//! but that is a convenience: the services check every change again, and their refusals come
//! back as messages on the page. Like the rest of the UI, every form works without JavaScript
//! and carries the CSRF token; `porteiro.js` enhances the ones marked `data-enhance`.
//!
//! The user list is searched (email or username prefix) and filtered (active, locked, role) by
//! `Auth::list_users`; the filters travel in the query, kept by the pager and by the row actions.

use std::collections::{HashMap, HashSet};

use askama::Template;
use axum::Form;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse as _, Response};
use futures::StreamExt as _;
use porteiro_core::Error;
use porteiro_core::domain::audit::{AuditEvent, AuditFilter, kind};
use porteiro_core::domain::rbac::{
    ADMIN_ROLE_ID, Grants, Permission, RbacKind, RbacObject, USER_ROLE_ID,
};
use porteiro_core::flows::admin::UserFilter;
use porteiro_core::flows::audit::MAX_AUDIT_PAGE;
use porteiro_core::flows::rbac::RbacChange;
use porteiro_core::service::Principal;
use serde::Deserialize;
use uuid::Uuid;

use super::account::{day, form_caller, when};
use super::pages::{nav, notice};
use super::webhooks::parse_time;
use super::{Chrome, Failure, Messages, Ui, html, redirect};
use crate::state::AppState;

/// Users per page of the list.
const USERS_PER_PAGE: u64 = 20;
/// Security events on a user's page.
const USER_EVENTS: u32 = 20;
/// Events per page of the audit log.
const AUDIT_PAGE: u32 = 50;

/// Notices these pages may be asked to show (`?notice=`), besides the UI's common ones.
const NOTICES: &[&str] = &[
    "user_deleted",
    "reset_link_sent",
    "signed_out_everywhere",
    "user_session_revoked",
    "role_assigned",
    "role_removed",
    "role_created",
    "role_saved",
    "role_deleted",
    "permission_created",
    "permission_saved",
    "permission_deleted",
    "permission_granted",
    "permission_revoked",
    "nothing_changed",
];

fn admin_notice(t: Messages, code: Option<&str>) -> Option<String> {
    match code {
        Some(code) if NOTICES.contains(&code) => Some(t.get(&format!("notice.{code}")).to_owned()),
        other => notice(t, other),
    }
}

/// Whether `p` may open the roles and permissions pages. The API lets any signed-in user read
/// roles; the console shows them to those who administer users or access.
pub(super) fn sees_roles(p: &Principal) -> bool {
    [
        Permission::UsersRead,
        Permission::RolesManage,
        Permission::PermissionsManage,
        Permission::RolesAssignPermission,
        Permission::UsersAssignRole,
    ]
    .into_iter()
    .any(|x| p.can(x))
}

fn reads_users(p: &Principal) -> bool {
    p.can(Permission::UsersRead)
}

fn reads_audit(p: &Principal) -> bool {
    p.can(Permission::AuditRead)
}

/// The signed-in caller of a console page, when `allowed`; else sign-in, or a 403 page.
async fn viewer(
    s: &AppState,
    ui: &Ui,
    allowed: fn(&Principal) -> bool,
) -> Result<Principal, Response> {
    let Some(p) = ui.principal(s).await else {
        return Err(ui.to_login());
    };
    if allowed(&p) {
        Ok(p)
    } else {
        Err(ui.refuse(s, Failure::from_error(ui.t, &Error::Forbidden)))
    }
}

/// A form's error and the part of the page it belongs to.
type Flagged = Option<(&'static str, Failure)>;

fn pick(error: &Flagged, section: &str) -> Option<String> {
    error
        .as_ref()
        .filter(|(s, _)| *s == section)
        .map(|(_, f)| f.message.clone())
}

/// The error's message when its section is not on the page (the caller may not use that form,
/// or a crafted post named one that is hidden): the page shows it at the top instead.
fn stray(error: &Flagged, shown: &[(&str, bool)]) -> Option<String> {
    let (section, f) = error.as_ref()?;
    let visible = shown.iter().any(|(s, on)| s == section && *on);
    (!visible).then(|| f.message.clone())
}

fn status_of(error: &Flagged) -> StatusCode {
    error.as_ref().map_or(StatusCode::OK, |(_, f)| f.status)
}

/// An id from a path or a form: a malformed one is looked up as the nil id, which is unknown
/// to administrators and forbidden to others, so nobody learns more from a bad id.
fn id_or_nil(raw: &str) -> Uuid {
    Uuid::parse_str(raw.trim()).unwrap_or(Uuid::nil())
}

/// A refusal for `field` that the services do not phrase (the page checks it first).
fn refusal(t: Messages, status: StatusCode, code: &'static str, key: &str) -> Failure {
    Failure {
        status,
        code,
        message: t.get(key).to_owned(),
        field: None,
    }
}

/// What a refused role or permission change means on its form: the permission the form needs,
/// and the words for a caller who holds it but not what the change hands out, renames or deletes
/// (the RBAC service's rule).
#[derive(Debug, Clone, Copy)]
struct Reach {
    needs: Permission,
    beyond: &'static str,
}

const ASSIGN_ROLE: Reach = Reach {
    needs: Permission::UsersAssignRole,
    beyond: "admin.role_beyond_reach",
};
const GRANT_PERMISSION: Reach = Reach {
    needs: Permission::RolesAssignPermission,
    beyond: "admin.permission_beyond_reach",
};

/// Changing or deleting an object of `kind`.
const fn change(kind: RbacKind) -> Reach {
    match kind {
        RbacKind::Role => Reach {
            needs: Permission::RolesManage,
            beyond: "admin.role_change_beyond_reach",
        },
        RbacKind::Permission => Reach {
            needs: Permission::PermissionsManage,
            beyond: "admin.permission_change_beyond_reach",
        },
    }
}

/// The services' refusals of a role or permission change, in words that fit these forms.
fn rbac_failure(t: Messages, p: &Principal, kind: RbacKind, reach: Reach, e: &Error) -> Failure {
    let f = Failure::from_error(t, e);
    let key = match (e, f.code) {
        (_, "invalid_name") => match kind {
            RbacKind::Role => "admin.invalid_role_name",
            RbacKind::Permission => "admin.invalid_permission_name",
        },
        (Error::Forbidden, _) if p.can(reach.needs) => reach.beyond,
        _ => return f,
    };
    Failure {
        message: t.get(key).to_owned(),
        ..f
    }
}

/// The JSON answer of an enhanced form, else the page again with the error in its section.
fn failed(ui: &Ui, f: &Failure) -> Option<Response> {
    ui.wants_json.then(|| ui.json_failure(f, HeaderMap::new()))
}

/// Usernames of the accounts `ids` (those that still exist), when the caller may read accounts.
async fn usernames(
    s: &AppState,
    p: &Principal,
    ids: impl IntoIterator<Item = Uuid>,
) -> HashMap<Uuid, String> {
    if !reads_users(p) {
        return HashMap::new();
    }
    let ids: HashSet<Uuid> = ids.into_iter().collect();
    let found = futures::future::join_all(
        ids.into_iter()
            .map(|id| async move { s.auth.user(p, id).await.ok().map(|u| (id, u.username)) }),
    )
    .await;
    found.into_iter().flatten().collect()
}

/// Whether the caller (holding `held`) may give or take the role `role_id`: they must hold
/// every permission it grants (the RBAC service's rule, mirrored to offer only what works).
async fn within_reach(s: &AppState, held: &Grants, role_id: Uuid) -> Result<bool, Error> {
    if held.is_admin() {
        return Ok(true);
    }
    Ok(s.rbac
        .role_permissions(role_id)
        .await?
        .iter()
        .all(|perm| held.allows(&perm.name)))
}

/// Whether `mine` holds every permission of `theirs`: what `users:manage` needs to change another
/// account (core's `ensure_manages`), mirrored to offer only the actions that work.
fn covers(mine: &Grants, theirs: &Grants) -> bool {
    theirs.permissions.iter().all(|p| mine.allows(p))
}

// ---------------------------------------------------------------------------------------------
// Users

struct UserRow {
    id: Uuid,
    username: String,
    email: String,
    roles: Vec<String>,
    is_self: bool,
    is_active: bool,
    locked: Option<String>,
    created: (String, String),
    /// The caller may unlock, disable or enable it.
    actions: bool,
}

#[derive(Template)]
#[template(path = "ui/admin_users.html")]
struct UsersPage {
    c: Chrome,
    t: Messages,
    users: Vec<UserRow>,
    total: String,
    page: u64,
    pages: u64,
    page_label: String,
    /// The search form's values.
    q: String,
    active: String,
    locked: String,
    role: String,
    /// Role names for the role filter.
    roles: Vec<String>,
    /// Whether any filter is set (the form offers to clear them).
    filtered: bool,
    /// The filters as a query string (`&`-prefixed pairs, or empty), for the pager and forms.
    keep: String,
    /// Holds `users:manage`: the row actions work.
    manage: bool,
    notice: Option<String>,
    error: Option<String>,
}

async fn render_users(
    s: &AppState,
    ui: &Ui,
    p: &Principal,
    q: &ListQuery,
    notice_text: Option<String>,
    error: Option<Failure>,
) -> Response {
    let t = ui.t;
    let page = q.page();
    let (listed, error) = match s
        .auth
        .list_users(p, &q.filter(), page, USERS_PER_PAGE)
        .await
    {
        Ok(listed) => (Some(listed), error),
        // A search term the list cannot take: the form says so, with no rows.
        Err(e @ Error::Validation(_)) => (None, Some(Failure::from_error(t, &e).on("q"))),
        Err(e) => return ui.refuse(s, Failure::from_error(t, &e)),
    };
    let total = listed.as_ref().map_or(0, |l| l.total);
    let pages = total.div_ceil(USERS_PER_PAGE).max(1);
    if page > pages {
        // Past the last page (accounts were deleted, or a hand-made link): show the last one.
        return redirect(
            HeaderMap::new(),
            &format!("/ui/admin?page={pages}{}", q.keep()),
        );
    }
    let roles = match s.rbac.list(RbacKind::Role).await {
        Ok(roles) => roles.into_iter().map(|r| r.name).collect(),
        Err(e) => return ui.refuse(s, Failure::from_error(t, &e)),
    };
    let listed_users = listed.map(|l| l.users).unwrap_or_default();
    let now = s.auth.now();
    let manage = p.can(Permission::UsersManage);
    let mut reach = HashMap::new();
    if manage {
        let mine = match s.rbac.grants_of(p.user_id).await {
            Ok(g) => g,
            Err(e) => return ui.refuse(s, Failure::from_error(t, &e)),
        };
        for u in &listed_users {
            let theirs = match s.rbac.grants_of(u.id).await {
                Ok(g) => g,
                Err(e) => return ui.refuse(s, Failure::from_error(t, &e)),
            };
            reach.insert(u.id, u.id == p.user_id || covers(&mine, &theirs));
        }
    }
    let users = listed_users
        .into_iter()
        .map(|u| UserRow {
            actions: reach.get(&u.id).copied().unwrap_or(false),
            id: u.id,
            is_self: u.id == p.user_id,
            is_active: u.is_active,
            locked: u
                .locked_until
                .filter(|l| *l > now)
                .map(|l| t.fmt("admin.locked", &[("time", &when(t, l).0)])),
            roles: u.roles,
            username: u.username,
            email: u.email,
            created: day(t, u.created_at),
        })
        .collect();
    let status = error.as_ref().map_or(StatusCode::OK, |f| f.status);
    let mut headers = HeaderMap::new();
    let view = UsersPage {
        c: ui.chrome(s, &mut headers, nav(p), "admin"),
        t,
        users,
        total: t.fmt("admin.total", &[("total", &total.to_string())]),
        page,
        pages,
        page_label: t.fmt(
            "admin.page",
            &[("page", &page.to_string()), ("pages", &pages.to_string())],
        ),
        q: q.q.trim().to_owned(),
        active: q.active.clone(),
        locked: q.locked.clone(),
        role: q.role.trim().to_owned(),
        roles,
        filtered: !q.keep().is_empty(),
        keep: q.keep(),
        manage,
        notice: notice_text,
        error: error.map(|f| f.message),
    };
    html(status, headers, &view)
}

/// The user list's query: filters, page, and where an action goes back to. Read leniently: a
/// malformed page number is page 1, an unknown state filter is no filter.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ListQuery {
    notice: Option<String>,
    page: Option<String>,
    /// Email or username prefix.
    #[serde(default)]
    q: String,
    /// `yes` (active) or `no` (disabled).
    #[serde(default)]
    active: String,
    /// `yes` (locked now) or `no`.
    #[serde(default)]
    locked: String,
    /// A role name.
    #[serde(default)]
    role: String,
    /// `user`: a form of a user's page, which it goes back to.
    back: Option<String>,
}

fn yes_no(raw: &str) -> Option<bool> {
    match raw {
        "yes" => Some(true),
        "no" => Some(false),
        _ => None,
    }
}

impl ListQuery {
    fn page(&self) -> u64 {
        self.page
            .as_deref()
            .and_then(|p| p.parse::<u64>().ok())
            .unwrap_or(1)
            .max(1)
    }

    fn filter(&self) -> UserFilter {
        let text = |v: &str| Some(v.trim().to_owned()).filter(|v| !v.is_empty());
        UserFilter {
            q: text(&self.q),
            active: yes_no(&self.active),
            locked: yes_no(&self.locked),
            role: text(&self.role),
        }
    }

    /// The filters in effect as `&name=value` pairs, to keep them in links and redirects.
    fn keep(&self) -> String {
        let f = self.filter();
        let flag = |v: Option<bool>| v.map(|b| if b { "yes" } else { "no" }.to_owned());
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("q", f.q),
            ("active", flag(f.active)),
            ("locked", flag(f.locked)),
            ("role", f.role),
        ] {
            if let Some(v) = v {
                out.append_pair(k, &v);
            }
        }
        let pairs = out.finish();
        if pairs.is_empty() {
            pairs
        } else {
            format!("&{pairs}")
        }
    }
}

/// `GET /ui/admin`: the user list, searched and filtered (`users:read`).
pub(super) async fn users_page(
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
    ui: Ui,
) -> Response {
    let p = match viewer(&s, &ui, reads_users).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let text = admin_notice(ui.t, q.notice.as_deref());
    render_users(&s, &ui, &p, &q, text, None).await
}

struct RoleChip {
    id: Uuid,
    name: String,
    builtin: bool,
    /// The caller may take it back.
    removable: bool,
}

struct SessionRow {
    id: Uuid,
    name: String,
    detail: String,
    ip: String,
    created: (String, String),
    active: (String, String),
    is_current: bool,
}

/// Someone an event names: their username when it can be shown, else the id.
struct Person {
    id: Uuid,
    label: String,
    /// Link to their page (the caller reads accounts and the account still exists).
    linked: bool,
}

impl Person {
    fn of(id: Uuid, names: &HashMap<Uuid, String>) -> Self {
        match names.get(&id) {
            Some(name) => Self {
                id,
                label: name.clone(),
                linked: true,
            },
            None => Self {
                id,
                label: id.to_string(),
                linked: false,
            },
        }
    }
}

struct EventRow {
    id: i64,
    at: (String, String),
    what: String,
    event_type: String,
    failed: bool,
    user: Option<Person>,
    actor: Option<Person>,
    ip: String,
    agent: String,
    details: String,
}

impl EventRow {
    fn of(t: Messages, e: AuditEvent, names: &HashMap<Uuid, String>) -> Self {
        let details = match &e.details {
            serde_json::Value::Object(m) if m.is_empty() => String::new(),
            serde_json::Value::Null => String::new(),
            other => other.to_string(),
        };
        Self {
            id: e.id,
            at: when(t, e.occurred_at),
            what: t.event(&e.event_type),
            // A failed sign-in says so in its wording; other refusals get a "(failed)" mark.
            failed: e.outcome != "success" && !e.event_type.ends_with(".failed"),
            event_type: e.event_type,
            user: e.user_id.map(|id| Person::of(id, names)),
            actor: e.actor_id.map(|id| Person::of(id, names)),
            ip: e.ip_address.unwrap_or_default(),
            agent: e.user_agent.unwrap_or_default(),
            details,
        }
    }
}

#[derive(Template)]
#[template(path = "ui/admin_user.html")]
struct UserPage {
    c: Chrome,
    t: Messages,
    id: Uuid,
    username: String,
    email: String,
    name: String,
    email_confirmed: Option<(String, String)>,
    active: bool,
    locked: Option<String>,
    locale: String,
    two_factor: bool,
    created: (String, String),
    updated: (String, String),
    is_self: bool,
    roles: Vec<RoleChip>,
    /// Roles the caller may give this account (those it does not hold yet).
    assignable: Vec<(Uuid, String)>,
    /// Roles exist that the caller may not give: the form says why they are missing.
    some_out_of_reach: bool,
    permissions: Vec<String>,
    sessions: Vec<SessionRow>,
    /// `None`: the caller does not read the audit log.
    events: Option<Vec<EventRow>>,
    can_assign: bool,
    /// The caller may change this account: `users:manage`, and every permission it holds.
    manages: bool,
    /// The caller has `users:manage`, but this account holds permissions they lack.
    out_of_reach: bool,
    notice: Option<String>,
    /// An error whose form is not on the page.
    error: Option<String>,
    roles_error: Option<String>,
    sessions_error: Option<String>,
    actions_error: Option<String>,
    delete_error: Option<String>,
}

async fn render_user(
    s: &AppState,
    ui: &Ui,
    p: &Principal,
    id: Uuid,
    notice_text: Option<String>,
    error: Flagged,
) -> Response {
    let mut headers = HeaderMap::new();
    let c = ui.chrome(s, &mut headers, nav(p), "admin");
    match user_view(s, ui, p, id, c, notice_text, &error).await {
        Ok(page) => html(status_of(&error), headers, &page),
        Err(e) => ui.refuse(s, Failure::from_error(ui.t, &e)),
    }
}

/// The user page in the frame `c`.
async fn user_view(
    s: &AppState,
    ui: &Ui,
    p: &Principal,
    id: Uuid,
    c: Chrome,
    notice_text: Option<String>,
    error: &Flagged,
) -> Result<UserPage, Error> {
    let t = ui.t;
    let user = s.auth.user(p, id).await?;
    let held_roles = s.rbac.user_roles(p, id).await?;
    let grants = s.rbac.grants_of(id).await?;
    let devices = s.auth.user_devices(p, id).await?;
    let two_factor = s.two_factor.status(p, id).await?;
    let can_assign = p.can(Permission::UsersAssignRole);
    let mine = s.rbac.grants_of(p.user_id).await?;
    let is_self = user.id == p.user_id;
    // Changing the account (not its roles) needs users:manage over it; one's own sessions are
    // one's own to end.
    let manages = p.can(Permission::UsersManage) && !is_self && covers(&mine, &grants);
    let mut roles = Vec::with_capacity(held_roles.len());
    for r in held_roles {
        // Every account keeps `user`.
        let removable = can_assign && r.id != USER_ROLE_ID && within_reach(s, &mine, r.id).await?;
        roles.push(RoleChip {
            id: r.id,
            name: r.name,
            builtin: r.builtin,
            removable,
        });
    }
    let (mut assignable, mut some_out_of_reach) = (Vec::new(), false);
    if can_assign {
        for r in s.rbac.list(RbacKind::Role).await? {
            if roles.iter().any(|held| held.id == r.id) {
                continue;
            }
            if within_reach(s, &mine, r.id).await? {
                assignable.push((r.id, r.name));
            } else {
                some_out_of_reach = true;
            }
        }
    }
    let events = if reads_audit(p) {
        let filter = AuditFilter {
            user_id: Some(id),
            ..AuditFilter::default()
        };
        let events = s.auth.audit_events(p, filter, USER_EVENTS).await?;
        let names = usernames(s, p, events.iter().filter_map(|e| e.actor_id)).await;
        Some(
            events
                .into_iter()
                .map(|e| EventRow::of(t, e, &names))
                .collect(),
        )
    } else {
        None
    };
    let sessions = devices
        .into_iter()
        .map(|d| {
            let s = d.session;
            SessionRow {
                id: s.id,
                detail: [s.browser.clone(), s.os.clone()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" · "),
                name: s.device_name,
                ip: s
                    .ip_address
                    .unwrap_or_else(|| t.get("account.unknown").to_owned()),
                created: when(t, s.created_at),
                active: when(t, s.last_active_at),
                is_current: d.is_current,
            }
        })
        .collect();
    let now = s.auth.now();
    let name = [user.first_name.as_deref(), user.last_name.as_deref()]
        .into_iter()
        .flatten()
        .filter(|n| !n.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    Ok(UserPage {
        c,
        t,
        id: user.id,
        email_confirmed: user.email_verified_at.map(|at| day(t, at)),
        active: user.is_active,
        locked: user
            .locked_until
            .filter(|l| *l > now)
            .map(|l| t.fmt("admin.locked", &[("time", &when(t, l).0)])),
        locale: user.locale.clone(),
        two_factor: two_factor.enabled,
        created: when(t, user.created_at),
        updated: when(t, user.updated_at),
        is_self,
        username: user.username,
        email: user.email,
        name,
        roles,
        assignable,
        some_out_of_reach,
        permissions: grants.permissions.clone(),
        sessions,
        events,
        can_assign,
        manages,
        out_of_reach: p.can(Permission::UsersManage) && !is_self && !manages,
        notice: notice_text,
        error: stray(
            error,
            &[
                ("roles", true),
                ("sessions", true),
                ("actions", manages),
                ("delete", manages),
            ],
        ),
        roles_error: pick(error, "roles"),
        sessions_error: pick(error, "sessions"),
        actions_error: pick(error, "actions"),
        delete_error: pick(error, "delete"),
    })
}

/// `GET /ui/admin/users/{id}`: one account (`users:read`).
pub(super) async fn user_page(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
    ui: Ui,
) -> Response {
    let p = match viewer(&s, &ui, reads_users).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let text = admin_notice(ui.t, q.notice.as_deref());
    render_user(&s, &ui, &p, id_or_nil(&id), text, None).await
}

#[derive(Deserialize)]
pub(super) struct UserForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    role_id: String,
    #[serde(default)]
    session_id: String,
    #[serde(default)]
    confirm: String,
}

/// `POST /ui/admin/users/{id}/{action}`: `unlock`, `disable`, `enable`, `sign-out-all`,
/// `send-password-reset`, `revoke-session` (`session_id`), `assign-role` and `remove-role`
/// (`role_id`), `delete` (`confirm=yes`). Back to the list (its page and filters kept), or to
/// the user's page with `?back=user`.
pub(super) async fn user_action(
    State(s): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
    ui: Ui,
    Form(form): Form<UserForm>,
) -> Response {
    let p = match form_caller(&s, &ui, &form.csrf_token).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let t = ui.t;
    let id = id_or_nil(&id);
    let plain = |e: Error| Failure::from_error(t, &e);
    let (section, result): (&'static str, Result<&'static str, Failure>) = match action.as_str() {
        "unlock" => (
            "actions",
            s.auth
                .unlock_as(&p, &id.to_string())
                .await
                .map(|_| "unlocked")
                .map_err(plain),
        ),
        "disable" | "enable" => {
            let enable = action == "enable";
            (
                "actions",
                s.auth
                    .set_active(&p, id, enable)
                    .await
                    .map(|_| if enable { "enabled" } else { "disabled" })
                    .map_err(plain),
            )
        }
        "sign-out-all" => (
            "actions",
            s.auth
                .revoke_all(&p, id)
                .await
                .map(|_| "signed_out_everywhere")
                .map_err(plain),
        ),
        "send-password-reset" => (
            "actions",
            s.auth
                .send_password_reset(&p, id)
                .await
                .map(|()| "reset_link_sent")
                .map_err(plain),
        ),
        "revoke-session" => (
            "sessions",
            s.auth
                .revoke_user_device(&p, id, id_or_nil(&form.session_id))
                .await
                .map(|()| "user_session_revoked")
                .map_err(plain),
        ),
        "assign-role" | "remove-role" => {
            let assign = action == "assign-role";
            let done = if assign {
                "role_assigned"
            } else {
                "role_removed"
            };
            (
                "roles",
                s.rbac
                    .link_role(&p, id, id_or_nil(&form.role_id), assign)
                    .await
                    .map(|changed| if changed { done } else { "nothing_changed" })
                    .map_err(|e| rbac_failure(t, &p, RbacKind::Role, ASSIGN_ROLE, &e)),
            )
        }
        "delete" => {
            let result = if id == p.user_id {
                // One's own account is deleted with its password, not from the console.
                Err(Error::validation(
                    "id",
                    "cannot_delete_self",
                    "You cannot delete your own account here.",
                ))
            } else if form.confirm == "yes" {
                s.auth
                    .delete_user(&p, id, None)
                    .await
                    .map(|()| "user_deleted")
            } else if p.can(Permission::UsersManage) {
                // Checked after the permission: others get the usual refusal.
                Err(Error::validation(
                    "confirm",
                    "confirm_delete",
                    "Tick the box to confirm.",
                ))
            } else {
                Err(Error::Forbidden)
            };
            ("delete", result.map_err(plain))
        }
        _ => return super::pages::not_found(State(s), ui).await,
    };
    let to_user = q.back.as_deref() == Some("user");
    match result {
        Ok("user_deleted") => ui.done(HeaderMap::new(), "/ui/admin?notice=user_deleted"),
        Ok(done) if to_user => ui.done(
            HeaderMap::new(),
            &format!("/ui/admin/users/{id}?notice={done}"),
        ),
        Ok(done) => ui.done(
            HeaderMap::new(),
            &format!("/ui/admin?page={}{}&notice={done}", q.page(), q.keep()),
        ),
        Err(f) => match failed(&ui, &f) {
            Some(r) => r,
            None if to_user => render_user(&s, &ui, &p, id, None, Some((section, f))).await,
            None => render_users(&s, &ui, &p, &q, None, Some(f)).await,
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Roles and permissions

struct RbacRow {
    id: Uuid,
    name: String,
    description: String,
    builtin: bool,
}

/// What a create or edit form holds (posted values after an error).
#[derive(Default)]
struct NameForm {
    name: String,
    description: String,
}

#[derive(Template)]
#[template(path = "ui/admin_roles.html")]
struct RolesPage {
    c: Chrome,
    t: Messages,
    roles: Vec<RbacRow>,
    permissions: Vec<RbacRow>,
    /// Holds `roles:manage`: the form to create a role.
    can_roles: bool,
    /// Holds `permissions:manage`: the form to create a permission.
    can_permissions: bool,
    role_form: NameForm,
    permission_form: NameForm,
    notice: Option<String>,
    error: Option<String>,
    role_error: Option<String>,
    permission_error: Option<String>,
}

fn rows(objects: Vec<RbacObject>) -> Vec<RbacRow> {
    objects
        .into_iter()
        .map(|o| RbacRow {
            id: o.id,
            name: o.name,
            description: o.description,
            builtin: o.builtin,
        })
        .collect()
}

async fn render_roles(
    s: &AppState,
    ui: &Ui,
    p: &Principal,
    notice_text: Option<String>,
    posted: Option<(RbacKind, NameForm)>,
    error: Flagged,
) -> Response {
    let (roles, permissions) = match (
        s.rbac.list(RbacKind::Role).await,
        s.rbac.list(RbacKind::Permission).await,
    ) {
        (Ok(r), Ok(p)) => (r, p),
        (Err(e), _) | (_, Err(e)) => return ui.refuse(s, Failure::from_error(ui.t, &e)),
    };
    let (mut role_form, mut permission_form) = (NameForm::default(), NameForm::default());
    match posted {
        Some((RbacKind::Role, f)) => role_form = f,
        Some((RbacKind::Permission, f)) => permission_form = f,
        None => {}
    }
    let (can_roles, can_permissions) = (
        p.can(Permission::RolesManage),
        p.can(Permission::PermissionsManage),
    );
    let mut headers = HeaderMap::new();
    let page = RolesPage {
        c: ui.chrome(s, &mut headers, nav(p), "roles"),
        t: ui.t,
        roles: rows(roles),
        permissions: rows(permissions),
        can_roles,
        can_permissions,
        role_form,
        permission_form,
        notice: notice_text,
        error: stray(
            &error,
            &[("role", can_roles), ("permission", can_permissions)],
        ),
        role_error: pick(&error, "role"),
        permission_error: pick(&error, "permission"),
    };
    html(status_of(&error), headers, &page)
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct NoticeOnly {
    notice: Option<String>,
}

/// `GET /ui/admin/roles`: every role and permission, and the forms to create them.
pub(super) async fn roles_page(
    State(s): State<AppState>,
    Query(q): Query<NoticeOnly>,
    ui: Ui,
) -> Response {
    let p = match viewer(&s, &ui, sees_roles).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let text = admin_notice(ui.t, q.notice.as_deref());
    render_roles(&s, &ui, &p, text, None, None).await
}

/// `GET /ui/admin/permissions`: the permissions are listed on the roles page.
pub(super) async fn permissions_anchor() -> Response {
    redirect(HeaderMap::new(), "/ui/admin/roles#permissions")
}

#[derive(Deserialize)]
pub(super) struct RbacForm {
    #[serde(default)]
    csrf_token: String,
    /// Absent for a built-in (its name cannot change).
    name: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    permission_id: String,
    #[serde(default)]
    confirm: String,
}

impl RbacForm {
    fn posted(&self) -> NameForm {
        NameForm {
            name: self.name.as_deref().unwrap_or_default().trim().to_owned(),
            description: self.description.trim().to_owned(),
        }
    }
}

/// Where each kind's pages live.
const fn base(kind: RbacKind) -> &'static str {
    match kind {
        RbacKind::Role => "/ui/admin/roles",
        RbacKind::Permission => "/ui/admin/permissions",
    }
}

const fn noun(kind: RbacKind) -> &'static str {
    match kind {
        RbacKind::Role => "role",
        RbacKind::Permission => "permission",
    }
}

async fn create(s: &AppState, ui: &Ui, kind: RbacKind, form: RbacForm) -> Response {
    let p = match form_caller(s, ui, &form.csrf_token).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let posted = form.posted();
    match s
        .rbac
        .create(&p, kind, &posted.name, Some(&posted.description))
        .await
    {
        Ok(created) => ui.done(
            HeaderMap::new(),
            &format!(
                "{}/{}?notice={}_created",
                base(kind),
                created.id,
                noun(kind)
            ),
        ),
        Err(e) => {
            let f = rbac_failure(ui.t, &p, kind, change(kind), &e);
            match failed(ui, &f) {
                Some(r) => r,
                None => {
                    render_roles(s, ui, &p, None, Some((kind, posted)), Some((noun(kind), f))).await
                }
            }
        }
    }
}

/// `POST /ui/admin/roles`: creates a role (`roles:manage`).
pub(super) async fn create_role(
    State(s): State<AppState>,
    ui: Ui,
    Form(form): Form<RbacForm>,
) -> Response {
    create(&s, &ui, RbacKind::Role, form).await
}

/// `POST /ui/admin/permissions`: creates a permission (`permissions:manage`).
pub(super) async fn create_permission(
    State(s): State<AppState>,
    ui: Ui,
    Form(form): Form<RbacForm>,
) -> Response {
    create(&s, &ui, RbacKind::Permission, form).await
}

struct GrantRow {
    id: Uuid,
    name: String,
    description: String,
    /// The caller may take it back (they hold it).
    revocable: bool,
}

#[derive(Template)]
#[template(path = "ui/admin_role.html")]
struct RolePage {
    c: Chrome,
    t: Messages,
    id: Uuid,
    name: String,
    description: String,
    builtin: bool,
    /// The `admin` role: it grants every permission, implicitly.
    is_admin_role: bool,
    created: (String, String),
    updated: (String, String),
    form: NameForm,
    permissions: Vec<GrantRow>,
    /// Permissions the caller may grant (held, not granted yet).
    grantable: Vec<(Uuid, String)>,
    /// Permissions exist that the caller does not hold: the form says why they are missing.
    some_out_of_reach: bool,
    /// May rename, re-describe and delete it: `roles:manage`, every permission it grants, and
    /// not a built-in.
    can_edit: bool,
    /// Holds `roles:manage` but not every permission the role grants.
    change_out_of_reach: bool,
    /// Holds `roles:assign-permission` (and the role's grants are a list).
    can_link: bool,
    notice: Option<String>,
    error: Option<String>,
    edit_error: Option<String>,
    grant_error: Option<String>,
    delete_error: Option<String>,
}

async fn render_role(
    s: &AppState,
    ui: &Ui,
    p: &Principal,
    id: Uuid,
    notice_text: Option<String>,
    posted: Option<NameForm>,
    error: Flagged,
) -> Response {
    let t = ui.t;
    let loaded = async {
        let role = s.rbac.get(RbacKind::Role, id).await?;
        let granted = s.rbac.role_permissions(id).await?;
        let all = s.rbac.list(RbacKind::Permission).await?;
        let mine = s.rbac.grants_of(p.user_id).await?;
        Ok::<_, Error>((role, granted, all, mine))
    };
    let (role, granted, all, mine) = match loaded.await {
        Ok(loaded) => loaded,
        Err(e) => return ui.refuse(s, Failure::from_error(t, &e)),
    };
    let is_admin_role = role.id == ADMIN_ROLE_ID;
    // Renaming or deleting a role needs every permission it grants (and never a built-in).
    let manager = p.can(Permission::RolesManage) && !role.builtin;
    let holds_all = granted.iter().all(|g| mine.allows(&g.name));
    let can_link = p.can(Permission::RolesAssignPermission) && !is_admin_role;
    let (mut grantable, mut some_out_of_reach) = (Vec::new(), false);
    if can_link {
        for perm in all {
            if granted.iter().any(|g| g.id == perm.id) {
                continue;
            }
            if mine.allows(&perm.name) {
                grantable.push((perm.id, perm.name));
            } else {
                some_out_of_reach = true;
            }
        }
    }
    let permissions = granted
        .into_iter()
        .map(|g| GrantRow {
            revocable: can_link && mine.allows(&g.name),
            id: g.id,
            name: g.name,
            description: g.description,
        })
        .collect();
    let can_edit = manager && holds_all;
    let error_shown = [("edit", can_edit), ("grant", true), ("delete", can_edit)];
    let mut headers = HeaderMap::new();
    let page = RolePage {
        c: ui.chrome(s, &mut headers, nav(p), "roles"),
        t,
        id: role.id,
        form: posted.unwrap_or_else(|| NameForm {
            name: role.name.clone(),
            description: role.description.clone(),
        }),
        name: role.name,
        description: role.description,
        builtin: role.builtin,
        is_admin_role,
        created: when(t, role.created_at),
        updated: when(t, role.updated_at),
        permissions,
        grantable,
        some_out_of_reach,
        can_edit,
        change_out_of_reach: manager && !holds_all,
        can_link,
        notice: notice_text,
        error: stray(&error, &error_shown),
        edit_error: pick(&error, "edit"),
        grant_error: pick(&error, "grant"),
        delete_error: pick(&error, "delete"),
    };
    html(status_of(&error), headers, &page)
}

/// `GET /ui/admin/roles/{id}`: one role, its permissions and its forms.
pub(super) async fn role_page(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<NoticeOnly>,
    ui: Ui,
) -> Response {
    let p = match viewer(&s, &ui, sees_roles).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let text = admin_notice(ui.t, q.notice.as_deref());
    render_role(&s, &ui, &p, id_or_nil(&id), text, None, None).await
}

/// Saves an edit form of a role or permission: only what changed (a built-in keeps its name).
async fn save(
    s: &AppState,
    p: &Principal,
    kind: RbacKind,
    id: Uuid,
    posted: &NameForm,
    name_sent: bool,
) -> Result<&'static str, Error> {
    // The permission first: the current values are only read for those who may change them.
    p.ensure(match kind {
        RbacKind::Role => Permission::RolesManage,
        RbacKind::Permission => Permission::PermissionsManage,
    })?;
    let current = s.rbac.get(kind, id).await?;
    let change = RbacChange {
        name: (name_sent && posted.name != current.name).then(|| posted.name.clone()),
        description: (posted.description != current.description)
            .then(|| posted.description.clone()),
    };
    if change.name.is_none() && change.description.is_none() {
        return Ok("nothing_changed");
    }
    s.rbac.update(p, kind, id, change).await?;
    Ok(match kind {
        RbacKind::Role => "role_saved",
        RbacKind::Permission => "permission_saved",
    })
}

/// `POST /ui/admin/roles/{id}`: renames or re-describes a role (`roles:manage`).
pub(super) async fn update_role(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ui: Ui,
    Form(form): Form<RbacForm>,
) -> Response {
    let p = match form_caller(&s, &ui, &form.csrf_token).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let id = id_or_nil(&id);
    let posted = form.posted();
    match save(&s, &p, RbacKind::Role, id, &posted, form.name.is_some()).await {
        Ok(done) => ui.done(
            HeaderMap::new(),
            &format!("/ui/admin/roles/{id}?notice={done}"),
        ),
        Err(e) => {
            let f = rbac_failure(ui.t, &p, RbacKind::Role, change(RbacKind::Role), &e);
            match failed(&ui, &f) {
                Some(r) => r,
                None => render_role(&s, &ui, &p, id, None, Some(posted), Some(("edit", f))).await,
            }
        }
    }
}

/// `POST /ui/admin/roles/{id}/{grant|revoke|delete}`: grants a permission to the role or takes
/// it back (`permission_id`; `roles:assign-permission`, and only a permission the caller holds),
/// or deletes the role (`confirm=yes`; `roles:manage`; never a built-in).
pub(super) async fn role_action(
    State(s): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    ui: Ui,
    Form(form): Form<RbacForm>,
) -> Response {
    let p = match form_caller(&s, &ui, &form.csrf_token).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let t = ui.t;
    let id = id_or_nil(&id);
    let (section, result) = match action.as_str() {
        "grant" | "revoke" => {
            let grant = action == "grant";
            let result = s
                .rbac
                .link_permission(&p, id, id_or_nil(&form.permission_id), grant)
                .await
                .map(|changed| match (changed, grant) {
                    (false, _) => "nothing_changed",
                    (true, true) => "permission_granted",
                    (true, false) => "permission_revoked",
                })
                .map_err(|e| rbac_failure(t, &p, RbacKind::Permission, GRANT_PERMISSION, &e));
            ("grant", result)
        }
        "delete" => ("delete", delete(&s, t, &p, RbacKind::Role, id, &form).await),
        _ => return super::pages::not_found(State(s), ui).await,
    };
    match result {
        Ok("role_deleted") => ui.done(HeaderMap::new(), "/ui/admin/roles?notice=role_deleted"),
        Ok(done) => ui.done(
            HeaderMap::new(),
            &format!("/ui/admin/roles/{id}?notice={done}"),
        ),
        Err(f) => match failed(&ui, &f) {
            Some(r) => r,
            None => render_role(&s, &ui, &p, id, None, None, Some((section, f))).await,
        },
    }
}

/// Deletes a role or permission once the box is ticked.
async fn delete(
    s: &AppState,
    t: Messages,
    p: &Principal,
    kind: RbacKind,
    id: Uuid,
    form: &RbacForm,
) -> Result<&'static str, Failure> {
    let manager = match kind {
        RbacKind::Role => Permission::RolesManage,
        RbacKind::Permission => Permission::PermissionsManage,
    };
    if form.confirm != "yes" {
        // Checked after the permission: others get the usual refusal.
        let e = if p.can(manager) {
            Error::validation("confirm", "confirm_delete", "Tick the box to confirm.")
        } else {
            Error::Forbidden
        };
        return Err(Failure::from_error(t, &e));
    }
    s.rbac
        .delete(p, kind, id)
        .await
        .map(|_| match kind {
            RbacKind::Role => "role_deleted",
            RbacKind::Permission => "permission_deleted",
        })
        .map_err(|e| rbac_failure(t, p, kind, change(kind), &e))
}

#[derive(Template)]
#[template(path = "ui/admin_permission.html")]
struct PermissionPage {
    c: Chrome,
    t: Messages,
    id: Uuid,
    name: String,
    description: String,
    builtin: bool,
    created: (String, String),
    updated: (String, String),
    form: NameForm,
    /// May rename, re-describe and delete it: `permissions:manage`, the permission itself, and
    /// not a built-in.
    can_edit: bool,
    /// Holds `permissions:manage` but not this permission.
    change_out_of_reach: bool,
    notice: Option<String>,
    error: Option<String>,
    edit_error: Option<String>,
    delete_error: Option<String>,
}

async fn render_permission(
    s: &AppState,
    ui: &Ui,
    p: &Principal,
    id: Uuid,
    notice_text: Option<String>,
    posted: Option<NameForm>,
    error: Flagged,
) -> Response {
    let t = ui.t;
    let (perm, mine) = match (
        s.rbac.get(RbacKind::Permission, id).await,
        s.rbac.grants_of(p.user_id).await,
    ) {
        (Ok(perm), Ok(mine)) => (perm, mine),
        (Err(e), _) | (_, Err(e)) => return ui.refuse(s, Failure::from_error(t, &e)),
    };
    // Renaming or deleting a permission needs the permission itself (and never a built-in).
    let manager = p.can(Permission::PermissionsManage) && !perm.builtin;
    let holds = mine.allows(&perm.name);
    let can_edit = manager && holds;
    let error_shown = [("edit", can_edit), ("delete", can_edit)];
    let mut headers = HeaderMap::new();
    let page = PermissionPage {
        c: ui.chrome(s, &mut headers, nav(p), "roles"),
        t,
        id: perm.id,
        form: posted.unwrap_or_else(|| NameForm {
            name: perm.name.clone(),
            description: perm.description.clone(),
        }),
        name: perm.name,
        description: perm.description,
        builtin: perm.builtin,
        created: when(t, perm.created_at),
        updated: when(t, perm.updated_at),
        can_edit,
        change_out_of_reach: manager && !holds,
        notice: notice_text,
        error: stray(&error, &error_shown),
        edit_error: pick(&error, "edit"),
        delete_error: pick(&error, "delete"),
    };
    html(status_of(&error), headers, &page)
}

/// `GET /ui/admin/permissions/{id}`: one permission and its forms.
pub(super) async fn permission_page(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<NoticeOnly>,
    ui: Ui,
) -> Response {
    let p = match viewer(&s, &ui, sees_roles).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let text = admin_notice(ui.t, q.notice.as_deref());
    render_permission(&s, &ui, &p, id_or_nil(&id), text, None, None).await
}

/// `POST /ui/admin/permissions/{id}`: renames or re-describes a permission
/// (`permissions:manage`).
pub(super) async fn update_permission(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ui: Ui,
    Form(form): Form<RbacForm>,
) -> Response {
    let p = match form_caller(&s, &ui, &form.csrf_token).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let id = id_or_nil(&id);
    let posted = form.posted();
    let kind = RbacKind::Permission;
    match save(&s, &p, kind, id, &posted, form.name.is_some()).await {
        Ok(done) => ui.done(
            HeaderMap::new(),
            &format!("/ui/admin/permissions/{id}?notice={done}"),
        ),
        Err(e) => {
            let f = rbac_failure(ui.t, &p, kind, change(kind), &e);
            match failed(&ui, &f) {
                Some(r) => r,
                None => {
                    render_permission(&s, &ui, &p, id, None, Some(posted), Some(("edit", f))).await
                }
            }
        }
    }
}

/// `POST /ui/admin/permissions/{id}/delete`: deletes a permission (`confirm=yes`;
/// `permissions:manage`; never a built-in).
pub(super) async fn delete_permission(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ui: Ui,
    Form(form): Form<RbacForm>,
) -> Response {
    let p = match form_caller(&s, &ui, &form.csrf_token).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let id = id_or_nil(&id);
    match delete(&s, ui.t, &p, RbacKind::Permission, id, &form).await {
        Ok(_) => ui.done(
            HeaderMap::new(),
            "/ui/admin/roles?notice=permission_deleted#permissions",
        ),
        Err(f) => match failed(&ui, &f) {
            Some(r) => r,
            None => render_permission(&s, &ui, &p, id, None, None, Some(("delete", f))).await,
        },
    }
}

// ---------------------------------------------------------------------------------------------
// The audit log

/// The audit log's filters as the query carries them (read leniently: `before` that is not a
/// positive number is ignored; the others are checked and explained).
#[derive(Debug, Default, Deserialize)]
pub(super) struct AuditQuery {
    #[serde(default)]
    user: String,
    #[serde(default, rename = "type")]
    event_type: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    before: Option<String>,
}

impl AuditQuery {
    fn before(&self) -> Option<i64> {
        self.before
            .as_deref()
            .and_then(|b| b.parse::<i64>().ok())
            .filter(|b| *b > 0)
    }

    /// The filters (without the cursor), for links that keep them.
    fn pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("user", self.user.trim()),
            ("type", self.event_type.trim()),
            ("since", self.since.trim()),
            ("until", self.until.trim()),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect()
    }

    fn query(&self, before: Option<i64>) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in self.pairs() {
            q.append_pair(k, v);
        }
        if let Some(b) = before {
            q.append_pair("before", &b.to_string());
        }
        q.finish()
    }

    /// The store's filter, or why the form's values cannot be one. The user may be given by
    /// id, username or email; an id needs no account (deleted accounts keep their events).
    async fn filter(&self, s: &AppState, t: Messages) -> Result<AuditFilter, Failure> {
        let bad = |key: &str, field: &'static str| {
            refusal(t, StatusCode::BAD_REQUEST, "invalid_filter", key).on(field)
        };
        let user = self.user.trim();
        let user_id = if user.is_empty() {
            None
        } else if let Ok(id) = Uuid::parse_str(user) {
            Some(id)
        } else {
            match s.auth.find_user(user).await {
                Ok(Some(u)) => Some(u.id),
                Ok(None) => return Err(bad("admin.audit_no_such_user", "user")),
                Err(e) => return Err(Failure::from_error(t, &e)),
            }
        };
        let event_type = match self.event_type.trim() {
            "" => None,
            k if kind::ALL.contains(&k) => Some(k.to_owned()),
            _ => return Err(bad("admin.audit_bad_type", "type")),
        };
        let time = |raw: &str, field: &'static str| match raw.trim() {
            "" => Ok(None),
            raw => parse_time(raw)
                .map(Some)
                .ok_or_else(|| bad("admin.audit_bad_time", field)),
        };
        let since = time(&self.since, "since")?;
        let until = time(&self.until, "until")?;
        if let (Some(a), Some(b)) = (since, until)
            && a >= b
        {
            return Err(bad("admin.audit_bad_range", "until"));
        }
        Ok(AuditFilter {
            user_id,
            event_type,
            since,
            until,
            before_id: self.before(),
        })
    }
}

struct TypeChoice {
    value: &'static str,
    label: String,
    selected: bool,
}

#[derive(Template)]
#[template(path = "ui/admin_audit.html")]
struct AuditPage {
    c: Chrome,
    t: Messages,
    user: String,
    since: String,
    until: String,
    types: Vec<TypeChoice>,
    events: Vec<EventRow>,
    /// The filtered list's first page, when this is a later one.
    newest: Option<String>,
    /// The next (older) page.
    older: Option<String>,
    /// The CSV export of the same filters.
    csv: String,
    error: Option<String>,
    field: &'static str,
}

/// `GET /ui/admin/audit`: security events, newest first, filtered and paged (`audit:read`).
pub(super) async fn audit_page(
    State(s): State<AppState>,
    Query(q): Query<AuditQuery>,
    ui: Ui,
) -> Response {
    let p = match viewer(&s, &ui, reads_audit).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let t = ui.t;
    let listed = match q.filter(&s, t).await {
        Ok(filter) => s
            .auth
            .audit_events(&p, filter, AUDIT_PAGE)
            .await
            .map_err(|e| Failure::from_error(t, &e)),
        Err(f) => Err(f),
    };
    let (events, error) = match listed {
        Ok(events) => (events, None),
        Err(f) => (Vec::new(), Some(f)),
    };
    let older = (u32::try_from(events.len()).is_ok_and(|n| n >= AUDIT_PAGE))
        .then(|| events.last().map(|e| e.id))
        .flatten()
        .map(|b| format!("/ui/admin/audit?{}", q.query(Some(b))));
    let names = usernames(
        &s,
        &p,
        events
            .iter()
            .flat_map(|e| e.user_id.into_iter().chain(e.actor_id)),
    )
    .await;
    let chosen = q.event_type.trim();
    let mut headers = HeaderMap::new();
    let page = AuditPage {
        c: ui.chrome(&s, &mut headers, nav(&p), "audit"),
        t,
        user: q.user.trim().to_owned(),
        since: q.since.trim().to_owned(),
        until: q.until.trim().to_owned(),
        types: kind::ALL
            .iter()
            .map(|k| TypeChoice {
                value: k,
                label: t.event(k),
                selected: *k == chosen,
            })
            .collect(),
        events: events
            .into_iter()
            .map(|e| EventRow::of(t, e, &names))
            .collect(),
        newest: q
            .before()
            .map(|_| format!("/ui/admin/audit?{}", q.query(None))),
        older,
        csv: format!("/ui/admin/audit.csv?{}", q.query(None)),
        field: error.as_ref().and_then(|f| f.field).unwrap_or(""),
        error: error.as_ref().map(|f| f.message.clone()),
    };
    let status = error.map_or(StatusCode::OK, |f| f.status);
    html(status, headers, &page)
}

/// The export's columns.
const CSV_HEADER: &str =
    "id,occurred_at,event_type,outcome,user_id,actor_id,ip_address,user_agent,details\r\n";

/// Appends one CSV cell (RFC 4180: always quoted, `"` doubled). A cell that a spreadsheet would
/// read as a formula (it starts with `=`, `+`, `-`, `@`, a tab or a carriage return; OWASP's
/// "CSV injection") gets a leading `'`, so a user agent or a name an attacker chose stays text.
fn csv_cell(out: &mut String, value: &str) {
    out.push('"');
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        out.push('\'');
    }
    for ch in value.chars() {
        if ch == '"' {
            out.push('"');
        }
        out.push(ch);
    }
    out.push('"');
}

fn csv_row(out: &mut String, e: &AuditEvent) {
    let id = |v: Option<Uuid>| v.map(|u| u.to_string()).unwrap_or_default();
    let cells = [
        e.id.to_string(),
        e.occurred_at.to_rfc3339(),
        e.event_type.clone(),
        e.outcome.clone(),
        id(e.user_id),
        id(e.actor_id),
        e.ip_address.clone().unwrap_or_default(),
        e.user_agent.clone().unwrap_or_default(),
        e.details.to_string(),
    ];
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_cell(out, cell);
    }
    out.push_str("\r\n");
}

fn csv_chunk(events: &[AuditEvent], header: bool) -> String {
    let mut out = String::with_capacity(events.len() * 256 + CSV_HEADER.len());
    if header {
        out.push_str(CSV_HEADER);
    }
    for e in events {
        csv_row(&mut out, e);
    }
    out
}

/// The cursor after a full page of the export, or `None` when that page was the last.
fn next_cursor(events: &[AuditEvent]) -> Option<i64> {
    (u32::try_from(events.len()).is_ok_and(|n| n >= MAX_AUDIT_PAGE))
        .then(|| events.last().map(|e| e.id))
        .flatten()
}

/// `GET /ui/admin/audit.csv`: every event the filters select, newest first, as a CSV download
/// (`audit:read`). Streamed a page at a time through the cursor, so a large log is never held in
/// memory; the first page is read before answering, so a failure there is an error page. A later
/// failure ends the download early and visibly (the connection is aborted), never silently.
pub(super) async fn audit_csv(
    State(s): State<AppState>,
    Query(q): Query<AuditQuery>,
    ui: Ui,
) -> Response {
    let p = match viewer(&s, &ui, reads_audit).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let t = ui.t;
    let mut filter = match q.filter(&s, t).await {
        Ok(filter) => filter,
        Err(f) => return ui.refuse(&s, f),
    };
    let first = match s
        .auth
        .audit_events(&p, filter.clone(), MAX_AUDIT_PAGE)
        .await
    {
        Ok(events) => events,
        Err(e) => return ui.refuse(&s, Failure::from_error(t, &e)),
    };
    let head = csv_chunk(&first, true);
    filter.before_id = next_cursor(&first);
    let state = filter.before_id.is_some().then_some((s.clone(), p, filter));
    let rest = futures::stream::unfold(state, |state| async move {
        let (s, p, mut filter) = state?;
        match s
            .auth
            .audit_events(&p, filter.clone(), MAX_AUDIT_PAGE)
            .await
        {
            Ok(events) => {
                filter.before_id = next_cursor(&events);
                let next = filter.before_id.is_some().then_some((s, p, filter));
                Some((Ok(csv_chunk(&events, false)), next))
            }
            Err(e) => {
                tracing::error!(error = %e, "audit export ended early");
                Some((Err(std::io::Error::other("audit export failed")), None))
            }
        }
    });
    let body = futures::stream::once(async move { Ok::<_, std::io::Error>(head) }).chain(rest);
    let name = format!(
        "attachment; filename=\"porteiro-audit-{}.csv\"",
        s.auth.now().format("%Y%m%dT%H%M%SZ")
    );
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&name) {
        headers.insert(CONTENT_DISPOSITION, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use porteiro_core::mail::Locale;

    fn event(user_agent: &str, details: serde_json::Value) -> AuditEvent {
        AuditEvent {
            id: 7,
            occurred_at: chrono::DateTime::parse_from_rfc3339("2025-03-04T05:06:07Z")
                .expect("a time")
                .with_timezone(&chrono::Utc),
            event_type: "sign_in.failed".to_owned(),
            outcome: "failure".to_owned(),
            user_id: None,
            actor_id: None,
            ip_address: Some("203.0.113.9".to_owned()),
            user_agent: Some(user_agent.to_owned()),
            details,
        }
    }

    #[test]
    fn csv_cells_are_quoted_and_formulas_stay_text() {
        let mut out = String::new();
        for (raw, cell) in [
            ("plain", "\"plain\""),
            ("say \"hi\", then go", "\"say \"\"hi\"\", then go\""),
            ("two\r\nlines", "\"two\r\nlines\""),
            (
                "=HYPERLINK(\"http://x\")",
                "\"'=HYPERLINK(\"\"http://x\"\")\"",
            ),
            ("+1", "\"'+1\""),
            ("-2+3", "\"'-2+3\""),
            ("@SUM(A1)", "\"'@SUM(A1)\""),
            ("\tcmd", "\"'\tcmd\""),
            ("a=b", "\"a=b\""),
            ("", "\"\""),
        ] {
            out.clear();
            csv_cell(&mut out, raw);
            assert_eq!(out, cell, "{raw:?}");
        }
    }

    #[test]
    fn csv_rows_have_every_column_in_order() {
        let e = event(
            "=cmd|' /C calc'!A0",
            serde_json::json!({"reason": "bad, \"x\""}),
        );
        let chunk = csv_chunk(std::slice::from_ref(&e), true);
        let mut lines = chunk.split("\r\n");
        assert_eq!(lines.next(), Some(CSV_HEADER.trim_end()));
        assert_eq!(
            lines.next(),
            Some(
                "\"7\",\"2025-03-04T05:06:07+00:00\",\"sign_in.failed\",\"failure\",\"\",\"\",\
                 \"203.0.113.9\",\"'=cmd|' /C calc'!A0\",\"{\"\"reason\"\":\"\"bad, \\\"\"x\\\"\"\"\"}\""
            )
        );
        assert_eq!(lines.next(), Some(""));
        assert_eq!(next_cursor(&[e]), None, "a short page is the last");
    }

    #[test]
    fn every_notice_has_wording_in_both_languages() {
        for locale in [Locale::En, Locale::PtBr] {
            let t = Messages::new(locale);
            for code in NOTICES {
                assert!(
                    admin_notice(t, Some(code)).is_some_and(|n| !n.starts_with("notice.")),
                    "{code}"
                );
            }
            assert!(admin_notice(t, Some("made_up")).is_none());
            assert!(
                admin_notice(t, Some("unlocked")).is_some(),
                "the UI's common notices too"
            );
        }
    }
}
