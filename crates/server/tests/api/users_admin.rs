//! User administration (issue 15): the searchable user list, profile updates (mass assignment
//! ignored), changing the email address through a link to the new one, deleting accounts,
//! the administrators' actions, the last-administrator rule, and who may do what.

use chrono::Utc;
use porteiro_core::domain::rbac::{Permission, RbacKind, RbacObject};
use porteiro_core::flows::registration::Registration;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{ADMIN_PASSWORD, PASSWORD, Reply, TestApp, TestUser, Tokens, spawn_app};

const CONFIRM_PREFIX: &str = "https://id.example.com/ui/verify-email?token=";

/// Registers `name` and gives them a role of their own holding `perms` (straight through the
/// store, before their first request, so no cached grants are stale), then signs them in.
async fn holder_of(app: &TestApp, name: &str, perms: &[Permission]) -> (TestUser, Tokens) {
    let user = app.register(name).await;
    let store = app.auth.store();
    let now = Utc::now();
    let role = store
        .create_rbac_object(
            RbacKind::Role,
            &RbacObject {
                id: uuid::Uuid::now_v7(),
                name: format!("{name}-role"),
                description: String::new(),
                builtin: false,
                created_at: now,
                updated_at: now,
            },
            &[],
        )
        .await
        .unwrap();
    for p in perms {
        assert!(
            store
                .grant_permission(role.id, p.id(), now, &[])
                .await
                .unwrap()
        );
    }
    assert!(
        store
            .assign_role(user.id.parse().unwrap(), role.id, now, &[])
            .await
            .unwrap()
    );
    let tokens = app.sign_in(&user).await;
    (user, tokens)
}

/// A second administrator (as `porteiro user create --admin` makes one), signed in.
async fn second_admin(app: &TestApp, name: &str) -> (TestUser, Tokens) {
    let user = app
        .auth
        .register(Registration {
            username: name.to_owned(),
            email: format!("{name}@example.com"),
            password: PASSWORD.to_owned().into(),
            confirm_password: None,
            first_name: None,
            last_name: None,
            locale: None,
            is_admin: true,
            email_verified: true,
        })
        .await
        .unwrap();
    let user = TestUser {
        id: user.id.to_string(),
        username: name.to_owned(),
        email: user.email,
        password: PASSWORD.to_owned(),
    };
    let tokens = app.sign_in(&user).await;
    (user, tokens)
}

async fn delete_with(app: &TestApp, id: &str, token: &str, body: Value) -> Reply {
    app.request(
        app.client
            .delete(format!("{}/api/users/{id}", app.url))
            .bearer_auth(token)
            .json(&body),
    )
    .await
}

async fn list(app: &TestApp, token: &str, query: &str) -> Reply {
    app.get_auth(&format!("/api/users?{query}"), token).await
}

/// Usernames of a list page, in order.
fn names(r: &Reply) -> Vec<String> {
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.data()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_owned())
        .collect()
}

/// The token of the `n`th confirmation-link mail to `email`.
async fn mailed_token(app: &TestApp, email: &str, n: usize) -> String {
    let link = app.smtp.wait_for_confirmation(email, n).await[n - 1].link();
    link.strip_prefix(CONFIRM_PREFIX)
        .unwrap_or_else(|| panic!("a confirmation link: {link}"))
        .to_owned()
}

/// Events about `user_id` of `event_type`, newest first.
async fn events(app: &TestApp, admin: &str, user_id: &str, event_type: &str) -> Vec<Value> {
    let r = app
        .get_auth(
            &format!("/api/admin/audit?user_id={user_id}&type={event_type}&limit=200"),
            admin,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.data()["events"].as_array().unwrap().clone()
}

async fn my_id(app: &TestApp, token: &str) -> String {
    let me = app.get_auth("/api/auth/me", token).await;
    me.data()["id"].as_str().unwrap().to_owned()
}

/// Every status in `replies` is a 4xx (never a 5xx, never a success).
fn all_client_errors(replies: &[(&str, &Reply)]) {
    for (what, r) in replies {
        assert!(
            r.status.is_client_error(),
            "{what}: {} {}",
            r.status,
            r.text
        );
        assert_eq!(r.body["status"], "error", "{what}: {}", r.text);
    }
}

both_backends! {
    async fn the_user_list_searches_and_filters_for_holders_of_users_read(backend: Backend) {
        let app = spawn_app(backend).await;
        let admin = app.admin().await;
        app.post("/api/auth/register", json!({"username": "Ana_Silva", "email": "ana.silva@example.com", "password": PASSWORD})).await;
        app.post("/api/auth/register", json!({"username": "anabel", "email": "bel@example.org", "password": PASSWORD})).await;
        let bruno = app.post("/api/auth/register", json!({"username": "bruno", "email": "ANA.B@example.net", "password": PASSWORD})).await;
        let bruno_id = bruno.data()["id"].as_str().unwrap().to_owned();
        let (_, reader) = holder_of(&app, "rita", &[Permission::UsersRead]).await;
        let plain = app.sign_in(&app.register("zeca").await).await;

        // Search: case-insensitive prefix of the email or the username, creation order.
        let r = list(&app, &reader.access, "q=ANA").await;
        assert_eq!(names(&r), ["Ana_Silva", "anabel", "bruno"]);
        assert_eq!((r.data()["total"].as_u64(), r.data()["total_pages"].as_u64()), (Some(3), Some(1)));
        assert_eq!(names(&list(&app, &reader.access, "q=bel%40").await), ["anabel"]);
        assert_eq!(names(&list(&app, &reader.access, "q=%20ana_s%20").await), ["Ana_Silva"]);
        assert_eq!(names(&list(&app, &reader.access, "q=silva").await), Vec::<String>::new());
        assert_eq!(names(&list(&app, &reader.access, "q=a_").await), Vec::<String>::new(), "`_` is no wildcard");
        assert_eq!(names(&list(&app, &reader.access, "q=%25").await), Vec::<String>::new(), "`%` is no wildcard");
        // The response keeps the list's shape.
        let r = list(&app, &reader.access, "q=ana&per_page=2&page=2").await;
        assert_eq!(names(&r), ["bruno"]);
        let mut keys: Vec<_> = r.data().as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["items", "page", "per_page", "total", "total_pages"]);
        assert_eq!((r.data()["page"].as_u64(), r.data()["per_page"].as_u64(), r.data()["total"].as_u64(), r.data()["total_pages"].as_u64()), (Some(2), Some(2), Some(3), Some(2)));

        // Filters: active, locked, role (an unknown role gives an empty page).
        let r = app.post(&format!("/api/users/{bruno_id}/disable"), json!({})).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        let r = app.post_auth(&format!("/api/users/{bruno_id}/disable"), &admin.access, json!({})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(names(&list(&app, &reader.access, "active=false").await), ["bruno"]);
        assert_eq!(list(&app, &reader.access, "active=true").await.data()["total"], 5);
        for _ in 0..5 {
            app.post("/auth", json!({"login": "anabel", "password": "Wrong-pass-1"})).await;
        }
        assert_eq!(names(&list(&app, &reader.access, "locked=true").await), ["anabel"]);
        assert_eq!(list(&app, &reader.access, "locked=false").await.data()["total"], 5);
        assert_eq!(names(&list(&app, &reader.access, "role=admin").await), ["admin"]);
        assert_eq!(names(&list(&app, &reader.access, "role=rita-role").await), ["rita"]);
        assert_eq!(list(&app, &reader.access, "role=user").await.data()["total"], 6);
        let r = list(&app, &reader.access, "role=no-such-role").await;
        assert_eq!((names(&r).len(), r.data()["total"].as_u64(), r.data()["total_pages"].as_u64()), (0, Some(0), Some(0)));
        assert_eq!(names(&list(&app, &reader.access, "q=a&active=true&locked=false&role=user").await), ["admin", "Ana_Silva"]);
        // Empty parameters are no filter.
        assert_eq!(list(&app, &reader.access, "q=&role=").await.data()["total"], 6);
        // Far past the end: an empty page with the total, never an error.
        let r = list(&app, &reader.access, "page=18446744073709551615&per_page=100").await;
        assert_eq!((names(&r).len(), r.data()["total"].as_u64()), (0, Some(6)));

        // Bad parameters are 400 JSON; callers without `users:read` get 403.
        let long = "a".repeat(255);
        for query in ["per_page=0", "per_page=101", "page=0", "page=-1", "page=abc", "active=maybe", "locked=2",
                      &format!("q={long}"), "q=a%00b", "q=a%0Ab"] {
            let r = list(&app, &reader.access, query).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}: {}", r.text);
            assert!(["invalid_query", "invalid_pagination"].contains(&r.body["code"].as_str().unwrap()), "{query}: {}", r.text);
        }
        assert_eq!(list(&app, &plain.access, "q=ana").await.status, StatusCode::FORBIDDEN);
        assert_eq!(app.get("/api/users").await.status, StatusCode::UNAUTHORIZED);
    }

    async fn nobody_reads_edits_or_deletes_another_user_without_the_permission(backend: Backend) {
        let app = spawn_app(backend).await;
        let admin = app.admin().await;
        let ana = app.register("ana").await;
        let bea = app.register("bea").await;
        let ta = app.sign_in(&ana).await;
        let (_, reader) = holder_of(&app, "rita", &[Permission::UsersRead]).await;
        let other = format!("/api/users/{}", bea.id);
        let mut refused = Vec::new();
        for token in [&ta.access, &reader.access] {
            refused.push(app.put_auth(&other, token, json!({"first_name": "X"})).await);
            refused.push(app.put_auth(&other, token, json!({"email": "x@example.com"})).await);
            refused.push(app.delete_auth(&other, token).await);
            refused.push(delete_with(&app, &bea.id, token, json!({"password": PASSWORD})).await);
            refused.push(app.post_auth(&format!("{other}/change-password"), token, json!({"new_password": "Outra-S3nha-Boa"})).await);
            for action in ["disable", "enable", "unlock", "sign-out-all", "send-password-reset"] {
                refused.push(app.post_auth(&format!("{other}/{action}"), token, json!({})).await);
            }
            // Nor on themselves where only `users:manage` may act.
            for action in ["disable", "enable", "unlock", "send-password-reset"] {
                let me = my_id(&app, token).await;
                refused.push(app.post_auth(&format!("/api/users/{me}/{action}"), token, json!({})).await);
            }
        }
        refused.push(app.get_auth(&other, &ta.access).await);
        for r in &refused {
            assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "{}", r.text);
        }
        // `users:read` reads others; nothing changed.
        let r = app.get_auth(&other, &reader.access).await;
        assert_eq!((r.status, r.data()["first_name"].as_str(), r.data()["email"].as_str()), (StatusCode::OK, None, Some("bea@example.com")));
        assert_eq!(app.me_status(&app.sign_in(&bea).await.access).await, StatusCode::OK);

        // Bad or unknown ids: 400 and 404, never 5xx.
        let unknown = uuid::Uuid::new_v4();
        let mut replies = Vec::new();
        for id in ["abc", "1", "00000000-0000-0000-0000-00000000000g"] {
            replies.push(("bad id get", app.get_auth(&format!("/api/users/{id}"), &admin.access).await));
            replies.push(("bad id put", app.put_auth(&format!("/api/users/{id}"), &admin.access, json!({})).await));
            replies.push(("bad id delete", app.delete_auth(&format!("/api/users/{id}"), &admin.access).await));
            replies.push(("bad id action", app.post_auth(&format!("/api/users/{id}/disable"), &admin.access, json!({})).await));
        }
        for (what, r) in &replies {
            assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_path")), "{what}: {}", r.text);
        }
        let path = format!("/api/users/{unknown}");
        let mut missing = vec![
            ("get", app.get_auth(&path, &admin.access).await),
            ("put", app.put_auth(&path, &admin.access, json!({"first_name": "X"})).await),
            ("put email", app.put_auth(&path, &admin.access, json!({"email": "x@example.com"})).await),
            ("delete", app.delete_auth(&path, &admin.access).await),
            ("change-password", app.post_auth(&format!("{path}/change-password"), &admin.access, json!({"new_password": "Outra-S3nha-Boa"})).await),
        ];
        for action in ["disable", "enable", "unlock", "sign-out-all", "send-password-reset"] {
            missing.push((action, app.post_auth(&format!("{path}/{action}"), &admin.access, json!({})).await));
        }
        for (what, r) in &missing {
            assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{what}: {}", r.text);
        }
        // Wrong types and broken bodies: 4xx.
        let self_path = format!("/api/users/{}", ana.id);
        let wrong = [
            ("first_name number", app.put_auth(&self_path, &ta.access, json!({"first_name": 5})).await),
            ("email array", app.put_auth(&self_path, &ta.access, json!({"email": ["a"]})).await),
            ("body array", app.put_auth(&self_path, &ta.access, json!([1, 2])).await),
            ("bad email", app.put_auth(&self_path, &ta.access, json!({"email": "not-an-address", "password": PASSWORD})).await),
            ("delete body", app.request(app.client.delete(format!("{}{self_path}", app.url)).bearer_auth(&ta.access).body("{not json")).await),
            ("delete body type", delete_with(&app, &ana.id, &ta.access, json!({"password": 5})).await),
        ];
        all_client_errors(&wrong.iter().map(|(w, r)| (*w, r)).collect::<Vec<_>>());
        assert_eq!(app.me_status(&ta.access).await, StatusCode::OK, "nothing was deleted");
    }

    async fn profile_updates_ignore_fields_that_are_not_part_of_a_profile(backend: Backend) {
        let app = spawn_app(backend).await;
        let admin = app.admin().await;
        let ana = app.register("ana").await;
        let ta = app.sign_in(&ana).await;
        let path = format!("/api/users/{}", ana.id);
        let r = app.put_auth(&path, &ta.access, json!({
            "first_name": "Ana", "is_admin": true, "roles": ["admin"], "email_verified": true,
            "username": "root", "id": uuid::Uuid::new_v4(), "failed_login_attempts": -5,
            "locked_until": null, "credential_epoch": 99, "password_hash": "x",
            "two_factor_enabled": true, "email_verified_at": "2020-01-01T00:00:00Z",
            "nested": {"is_admin": [true]},
        })).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let d = r.data();
        assert_eq!(d["first_name"], "Ana");
        assert_eq!((d["is_admin"].as_bool(), d["roles"].clone()), (Some(false), json!(["user"])));
        assert_eq!((d["email_verified"].as_bool(), d["username"].as_str(), d["id"].as_str()), (Some(false), Some("ana"), Some(ana.id.as_str())));
        // A manager's update of someone else ignores them too.
        let r = app.put_auth(&path, &admin.access, json!({"last_name": "Souza", "roles": ["admin"], "is_admin": true, "email_verified": true})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!((r.data()["last_name"].as_str(), r.data()["is_admin"].as_bool(), r.data()["email_verified"].as_bool()), (Some("Souza"), Some(false), Some(false)));
        // The token still carries no new power.
        assert_eq!(list(&app, &ta.access, "").await.status, StatusCode::FORBIDDEN);
        // `is_active` needs `users:manage`, and never on one's own account.
        let r = app.put_auth(&path, &ta.access, json!({"is_active": true})).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let admin_id = my_id(&app, &admin.access).await;
        for active in [true, false] {
            let r = app.put_auth(&format!("/api/users/{admin_id}"), &admin.access, json!({"is_active": active})).await;
            assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("cannot_disable_self")), "{}", r.text);
        }
        for action in ["disable", "enable"] {
            let r = app.post_auth(&format!("/api/users/{admin_id}/{action}"), &admin.access, json!({})).await;
            assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("cannot_disable_self")), "{}", r.text);
        }
        // The current address, in any spelling, is no change and needs no password.
        let r = app.put_auth(&path, &ta.access, json!({"email": " ANA@Example.COM ", "locale": "pt-BR"})).await;
        assert_eq!((r.status, r.body["message"].as_str(), r.data()["locale"].as_str()), (StatusCode::OK, Some("Profile updated."), Some("pt-BR")));
    }

    async fn an_email_change_takes_effect_when_the_link_to_the_new_address_is_used(backend: Backend) {
        let app = spawn_app(backend).await;
        let admin = app.admin().await;
        let ana = app.register("ana").await;
        let ta = app.sign_in(&ana).await;
        let path = format!("/api/users/{}", ana.id);
        // The password is required, and a wrong one changes nothing (not even the rest).
        for body in [json!({"email": "ana.new@example.org"}),
                     json!({"email": "ana.new@example.org", "password": "Wrong-pass-1", "first_name": "Zed"})] {
            let r = app.put_auth(&path, &ta.access, body).await;
            assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::FORBIDDEN, Some("incorrect_password")), "{}", r.text);
        }
        let r = app.put_auth(&path, &ta.access, json!({"email": "Ana.New@Example.ORG", "password": PASSWORD, "first_name": "Ana"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(r.body["message"].as_str().unwrap().contains("confirm the new email address"), "{}", r.text);
        assert_eq!((r.data()["email"].as_str(), r.data()["first_name"].as_str()), (Some("ana@example.com"), Some("Ana")), "unchanged until confirmed");
        // A link to the new address, a notice to the old one (no link in it).
        let token = mailed_token(&app, "ana.new@example.org", 1).await;
        let notice = &app.smtp.wait_for("ana@example.com", 1).await[0];
        assert!(notice.subject().contains("change of your email address"), "{}", notice.subject());
        assert!(!notice.text().contains("token="), "{}", notice.text());
        assert_eq!(app.sign_in_as_status("ana.new@example.org", PASSWORD).await, StatusCode::FORBIDDEN);

        let r = app.post("/api/auth/verify-email", json!({"token": token})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!((r.data()["email"].as_str(), r.data()["email_verified"].as_bool()), (Some("ana.new@example.org"), Some(true)));
        let me = app.get_auth("/api/auth/me", &ta.access).await;
        assert_eq!((me.data()["email"].as_str(), me.data()["email_verified"].as_bool()), (Some("ana.new@example.org"), Some(true)));
        assert_eq!(app.sign_in_as_status("ana.new@example.org", PASSWORD).await, StatusCode::OK);
        assert_eq!(app.sign_in_as_status("ana@example.com", PASSWORD).await, StatusCode::FORBIDDEN);
        // Spent; the registration link to the old address is spent too.
        let again = app.post("/api/auth/verify-email", json!({"token": token})).await;
        assert_eq!((again.status, again.body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_confirmation_token")));
        let first = mailed_token(&app, "ana@example.com", 1).await;
        let old = app.post("/api/auth/verify-email", json!({"token": first})).await;
        assert_eq!(old.status, StatusCode::BAD_REQUEST, "{}", old.text);
        assert_eq!(app.get_auth(&path, &ta.access).await.data()["email"], "ana.new@example.org");

        // Both steps are audited; the old address is now free to register.
        assert_eq!(events(&app, &admin.access, &ana.id, "email.change_requested").await.len(), 2, "the wrong password, the request");
        let changed = events(&app, &admin.access, &ana.id, "email.changed").await;
        assert_eq!((changed.len(), changed[0]["outcome"].as_str()), (1, Some("success")));
        let r = app.post("/api/auth/register", json!({"username": "other", "email": "ana@example.com", "password": PASSWORD})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }

    async fn an_email_change_says_nothing_about_other_accounts(backend: Backend) {
        let app = spawn_app(backend).await;
        let ana = app.register("ana").await;
        let bea = app.register("bea").await;
        let ta = app.sign_in(&ana).await;
        let path = format!("/api/users/{}", ana.id);
        let free = app.put_auth(&path, &ta.access, json!({"email": "free@example.org", "password": PASSWORD})).await;
        let taken = app.put_auth(&path, &ta.access, json!({"email": bea.email, "password": PASSWORD})).await;
        assert_eq!(free.status, StatusCode::OK, "{}", free.text);
        assert_eq!((taken.status, &taken.body["message"], &taken.data()["email"]), (free.status, &free.body["message"], &free.data()["email"]));
        // The taken address gets a notice, not a link; the account's address is told both times.
        let notice = &app.smtp.wait_for(&bea.email, 1).await[0];
        assert!(notice.subject().contains("already in use"), "{}", notice.subject());
        assert!(!notice.text().contains("token="));
        app.smtp.wait_for(&ana.email, 2).await;
        assert_eq!(app.smtp.wait_for_confirmation(&bea.email, 1).await.len(), 1, "only bea's own registration link");
        // The newest request spent the first link.
        let link = mailed_token(&app, "free@example.org", 1).await;
        let r = app.post("/api/auth/verify-email", json!({"token": link})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        // Three links an hour per account (registration's included): then 429, whatever the address.
        let r = app.put_auth(&path, &ta.access, json!({"email": "third@example.org", "password": PASSWORD})).await;
        assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("too_many_requests")), "{}", r.text);
        assert!(r.headers.contains_key("retry-after"));
    }

    async fn an_address_taken_before_the_link_is_used_changes_nothing(backend: Backend) {
        let app = spawn_app(backend).await;
        let ana = app.register("ana").await;
        let ta = app.sign_in(&ana).await;
        let r = app.put_auth(&format!("/api/users/{}", ana.id), &ta.access, json!({"email": "new@example.org", "password": PASSWORD})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let token = mailed_token(&app, "new@example.org", 1).await;
        // Someone registers the address meanwhile.
        let other = app.post("/api/auth/register", json!({"username": "carl", "email": "new@example.org", "password": PASSWORD})).await;
        assert_eq!(other.status, StatusCode::CREATED);
        let r = app.post("/api/auth/verify-email", json!({"token": token})).await;
        assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::CONFLICT, Some("email_taken")), "{}", r.text);
        let me = app.get_auth("/api/auth/me", &ta.access).await;
        assert_eq!((me.data()["email"].as_str(), me.data()["email_verified"].as_bool()), (Some("ana@example.com"), Some(false)));
        assert_eq!(app.sign_in_as_status("ana@example.com", PASSWORD).await, StatusCode::OK);
    }

    async fn managers_change_addresses_without_a_password_and_wrong_ones_lock_the_owner(backend: Backend) {
        let app = spawn_app(backend).await;
        let admin = app.admin().await;
        let ana = app.register("ana").await;
        let r = app.put_auth(&format!("/api/users/{}", ana.id), &admin.access, json!({"email": "ana.work@example.org"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let token = mailed_token(&app, "ana.work@example.org", 1).await;
        assert_eq!(app.post("/api/auth/verify-email", json!({"token": token})).await.status, StatusCode::OK);
        let requested = events(&app, &admin.access, &ana.id, "email.change_requested").await;
        assert_eq!(requested[0]["actor_id"].as_str(), Some(my_id(&app, &admin.access).await.as_str()));
        assert_eq!(requested[0]["details"]["by"], "admin");

        // Wrong current passwords count towards the lock, like a change of password.
        let bea = app.register("bea").await;
        let tb = app.sign_in(&bea).await;
        for _ in 0..5 {
            let r = app.put_auth(&format!("/api/users/{}", bea.id), &tb.access, json!({"email": "b2@example.org", "password": "Wrong-pass-1"})).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN);
        }
        assert_eq!(app.sign_in_as_status("bea", PASSWORD).await, StatusCode::FORBIDDEN, "locked");
        let r = app.put_auth(&format!("/api/users/{}", bea.id), &tb.access, json!({"email": "b2@example.org", "password": PASSWORD})).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "a locked account's right password is refused too");
        // A disabled account's address cannot be changed.
        let r = app.post_auth(&format!("/api/users/{}/disable", bea.id), &admin.access, json!({})).await;
        assert_eq!(r.status, StatusCode::OK);
        let r = app.put_auth(&format!("/api/users/{}", bea.id), &admin.access, json!({"email": "b3@example.org"})).await;
        assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::CONFLICT, Some("account_disabled")), "{}", r.text);
    }

    async fn accounts_are_deleted_by_their_holder_with_the_password_or_by_a_manager(backend: Backend) {
        let app = spawn_app(backend).await;
        let admin = app.admin().await;
        let ana = app.register("ana").await;
        let ta = app.sign_in(&ana).await;
        let ta2 = app.sign_in(&ana).await;
        // One's own account needs the password; wrong ones count towards the lock.
        for body in [json!({}), json!({"password": "Wrong-pass-1"})] {
            let r = delete_with(&app, &ana.id, &ta.access, body).await;
            assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::FORBIDDEN, Some("incorrect_password")), "{}", r.text);
        }
        assert_eq!(app.delete_auth(&format!("/api/users/{}", ana.id), &ta.access).await.status, StatusCode::FORBIDDEN);
        let failures = events(&app, &admin.access, &ana.id, "user.deleted").await;
        assert_eq!(failures.len(), 1, "the wrong password is recorded");
        assert_eq!(failures[0]["outcome"], "failure");
        let r = delete_with(&app, &ana.id, &ta.access, json!({"password": PASSWORD})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        for t in [&ta, &ta2] {
            assert_eq!(app.me_status(&t.access).await, StatusCode::UNAUTHORIZED, "every session ends at once");
            assert_eq!(app.post("/refresh", json!({"refresh": t.refresh})).await.status, StatusCode::FORBIDDEN);
        }
        assert_eq!(app.get_auth(&format!("/api/users/{}", ana.id), &admin.access).await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.sign_in_as_status("ana", PASSWORD).await, StatusCode::FORBIDDEN);
        let deleted = events(&app, &admin.access, &ana.id, "user.deleted").await;
        assert_eq!((deleted[0]["outcome"].as_str(), deleted[0]["details"]["by"].as_str(), deleted[0]["actor_id"].as_str()), (Some("success"), Some("self"), None));

        // A manager deletes someone else's without a password.
        let bea = app.register("bea").await;
        let tb = app.sign_in(&bea).await;
        let r = app.delete_auth(&format!("/api/users/{}", bea.id), &admin.access).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(app.me_status(&tb.access).await, StatusCode::UNAUTHORIZED);
        let deleted = events(&app, &admin.access, &bea.id, "user.deleted").await;
        assert_eq!((deleted[0]["details"]["by"].as_str(), deleted[0]["actor_id"].as_str()), (Some("admin"), Some(my_id(&app, &admin.access).await.as_str())));
        assert_eq!(app.delete_auth(&format!("/api/users/{}", bea.id), &admin.access).await.status, StatusCode::NOT_FOUND);

        // The only administrator cannot delete themselves, even with the password.
        let admin_id = my_id(&app, &admin.access).await;
        let r = delete_with(&app, &admin_id, &admin.access, json!({"password": ADMIN_PASSWORD})).await;
        assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::CONFLICT, Some("last_admin")), "{}", r.text);
        assert_eq!(app.me_status(&admin.access).await, StatusCode::OK);
    }

    async fn the_last_admin_survives_every_removal_even_concurrent_ones(backend: Backend) {
        let app = spawn_app(backend).await;
        let admin = app.admin().await;
        let admin_id = my_id(&app, &admin.access).await;
        // Someone holding every permission without the admin role may act on an admin.
        let (_, all) = holder_of(&app, "sofia", Permission::ALL).await;
        for action in ["disable", "send-password-reset"] {
            let r = app.post_auth(&format!("/api/users/{admin_id}/{action}"), &all.access, json!({})).await;
            if action == "disable" {
                assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::CONFLICT, Some("last_admin")), "{}", r.text);
            } else {
                assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            }
        }
        let r = app.put_auth(&format!("/api/users/{admin_id}"), &all.access, json!({"is_active": false})).await;
        assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::CONFLICT, Some("last_admin")), "{}", r.text);
        let r = app.delete_auth(&format!("/api/users/{admin_id}"), &all.access).await;
        assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::CONFLICT, Some("last_admin")), "{}", r.text);
        assert_eq!(app.me_status(&admin.access).await, StatusCode::OK, "nothing changed");

        // Two administrators delete their own accounts at the same time: one of them stays.
        let (second, second_tokens) = second_admin(&app, "dora").await;
        let (a, b) = tokio::join!(
            delete_with(&app, &admin_id, &admin.access, json!({"password": ADMIN_PASSWORD})),
            delete_with(&app, &second.id, &second_tokens.access, json!({"password": PASSWORD})),
        );
        let mut statuses = [a.status, b.status];
        statuses.sort();
        assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT], "{} / {}", a.text, b.text);
        let conflict = if a.status == StatusCode::CONFLICT { &a } else { &b };
        assert_eq!(conflict.body["code"], "last_admin");
        let r = list(&app, &all.access, "role=admin&active=true").await;
        assert_eq!(r.data()["total"], 1);

        // Two deletions of the last two administrators by a third party: one stays.
        let (third, _) = second_admin(&app, "edna").await;
        let survivor = r.data()["items"][0]["id"].as_str().unwrap().to_owned();
        let (first, second) = (format!("/api/users/{survivor}"), format!("/api/users/{}", third.id));
        let (a, b) = tokio::join!(
            app.delete_auth(&first, &all.access),
            app.delete_auth(&second, &all.access),
        );
        let mut statuses = [a.status, b.status];
        statuses.sort();
        assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT], "{} / {}", a.text, b.text);
        assert_eq!(list(&app, &all.access, "role=admin&active=true").await.data()["total"], 1);
    }

    async fn users_manage_alone_cannot_act_on_an_administrator(backend: Backend) {
        let app = spawn_app(backend).await;
        let admin = app.admin().await;
        let admin_id = my_id(&app, &admin.access).await;
        let (_, manager) = holder_of(&app, "mario", &[Permission::UsersRead, Permission::UsersManage]).await;
        let ana = app.register("ana").await;
        // Plain accounts: yes.
        let r = app.post_auth(&format!("/api/users/{}/disable", ana.id), &manager.access, json!({})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let r = app.put_auth(&format!("/api/users/{}", ana.id), &manager.access, json!({"is_active": true})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let r = app.put_auth(&format!("/api/users/{}", ana.id), &manager.access, json!({"email": "ana2@example.org"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        // An administrator, who holds more: no takeover, no lock-out.
        let path = format!("/api/users/{admin_id}");
        let refused = [
            app.put_auth(&path, &manager.access, json!({"email": "mine@example.org"})).await,
            app.put_auth(&path, &manager.access, json!({"first_name": "Pwned"})).await,
            app.post_auth(&format!("{path}/change-password"), &manager.access, json!({"new_password": "Outra-S3nha-Boa"})).await,
            app.post_auth(&format!("{path}/disable"), &manager.access, json!({})).await,
            app.post_auth(&format!("{path}/unlock"), &manager.access, json!({})).await,
            app.post_auth(&format!("{path}/send-password-reset"), &manager.access, json!({})).await,
            app.post_auth(&format!("{path}/sign-out-all"), &manager.access, json!({})).await,
            app.post_auth(&format!("/api/auth/revoke-all/{admin_id}"), &manager.access, json!({})).await,
            app.delete_auth(&path, &manager.access).await,
        ];
        for r in &refused {
            assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "{}", r.text);
        }
        assert_eq!(app.me_status(&admin.access).await, StatusCode::OK);
        assert_eq!(app.get_auth(&path, &manager.access).await.data()["first_name"], Value::Null);
    }

    async fn administrators_act_on_accounts_through_routes_and_every_action_is_audited(backend: Backend) {
        let app = spawn_app(backend).await;
        let admin = app.admin().await;
        let admin_id = my_id(&app, &admin.access).await;
        let ana = app.register("ana").await;
        let ta = app.sign_in(&ana).await;
        let path = format!("/api/users/{}", ana.id);

        // Disable: no sign-in, sessions end at once; enable: signs in again.
        let r = app.post_auth(&format!("{path}/disable"), &admin.access, json!({})).await;
        assert_eq!((r.status, r.data()["is_active"].as_bool()), (StatusCode::OK, Some(false)), "{}", r.text);
        assert_eq!(app.me_status(&ta.access).await, StatusCode::UNAUTHORIZED);
        let login = app.post("/api/auth/login", json!({"username_or_email": "ana", "password": PASSWORD})).await;
        assert_eq!(login.body["code"], "account_disabled");
        let r = app.post_auth(&format!("{path}/send-password-reset"), &admin.access, json!({})).await;
        assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::CONFLICT, Some("account_disabled")), "{}", r.text);
        let r = app.post_auth(&format!("{path}/enable"), &admin.access, json!({})).await;
        assert_eq!((r.status, r.data()["is_active"].as_bool()), (StatusCode::OK, Some(true)), "{}", r.text);
        let ta = app.sign_in(&ana).await;

        // Unlock.
        for _ in 0..5 {
            app.post("/auth", json!({"login": "ana", "password": "Wrong-pass-1"})).await;
        }
        assert_eq!(app.sign_in_as_status("ana", PASSWORD).await, StatusCode::FORBIDDEN);
        let r = app.post_auth(&format!("{path}/unlock"), &admin.access, json!({})).await;
        assert_eq!((r.status, r.data()["is_locked"].as_bool()), (StatusCode::OK, Some(false)), "{}", r.text);
        assert_eq!(app.sign_in_as_status("ana", PASSWORD).await, StatusCode::OK);

        // Sign out everywhere: every session ends (the unlock above made one more).
        let r = app.post_auth(&format!("{path}/sign-out-all"), &admin.access, json!({})).await;
        assert_eq!((r.status, r.data()["revoked"].as_u64()), (StatusCode::OK, Some(2)), "{}", r.text);
        assert_eq!(app.me_status(&ta.access).await, StatusCode::UNAUTHORIZED);
        // Holders may sign themselves out too.
        let own = app.sign_in(&ana).await;
        let r = app.post_auth(&format!("{path}/sign-out-all"), &own.access, json!({})).await;
        assert_eq!((r.status, r.data()["revoked"].as_u64()), (StatusCode::OK, Some(1)), "{}", r.text);

        // A reset link on the holder's behalf; it works.
        let r = app.post_auth(&format!("{path}/send-password-reset"), &admin.access, json!({})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let mail = &app.smtp.wait_for(&ana.email, 1).await[0];
        let token = mail.link().split("token=").nth(1).unwrap().to_owned();
        let r = app.post("/api/auth/reset-password", json!({"token": token, "password": "Nova-S3nha-Boa"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(app.sign_in_as_status("ana", "Nova-S3nha-Boa").await, StatusCode::OK);
        // The account's limit of reset mails applies.
        let mut last = StatusCode::OK;
        for _ in 0..3 {
            last = app.post_auth(&format!("{path}/send-password-reset"), &admin.access, json!({})).await.status;
        }
        assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);

        // Every action is in the audit log with the administrator as actor.
        for (kind, check) in [
            ("user.updated", json!({"fields": ["is_active"], "is_active": false})),
            ("user.updated", json!({"fields": ["is_active"], "is_active": true})),
            ("account.unlocked", json!({"via": "api"})),
            ("sessions.revoked_all", json!({})),
            ("password.reset_requested", json!({"mail": "queued", "by": "admin"})),
        ] {
            let found = events(&app, &admin.access, &ana.id, kind).await;
            let hit = found.iter().find(|e| {
                e["actor_id"].as_str() == Some(admin_id.as_str())
                    && check.as_object().unwrap().iter().all(|(k, v)| &e["details"][k] == v)
            });
            assert!(hit.is_some(), "{kind} {check}: {found:?}");
        }
    }
}
