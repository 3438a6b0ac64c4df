//! Roles and permissions end to end (`/api/rbac`): built-ins, CRUD, assignments that take effect
//! on the next request, refused escalations, the last administrator, checks, tokens and
//! introspection, and (PostgreSQL) a second instance seeing a removal within a second.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, spawn_app, spawn_twin};

async fn my_id(app: &TestApp, token: &str) -> String {
    let r = app.get_auth("/api/auth/me", token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.data()["id"].as_str().unwrap().to_owned()
}

async fn create(app: &TestApp, token: &str, what: &str, name: &str) -> String {
    let r = app
        .post_auth(
            &format!("/api/rbac/{what}"),
            token,
            json!({"name": name, "description": "test"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.data()["id"].as_str().unwrap().to_owned()
}

async fn permission_id(app: &TestApp, token: &str, name: &str) -> String {
    let r = app
        .get_auth(&format!("/api/rbac/permissions/by-name/{name}"), token)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.data()["id"].as_str().unwrap().to_owned()
}

async fn role_id(app: &TestApp, token: &str, name: &str) -> String {
    let r = app
        .get_auth(&format!("/api/rbac/roles/by-name/{name}"), token)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.data()["id"].as_str().unwrap().to_owned()
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_owned())
        .collect()
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

both_backends! {
    async fn builtins_and_crud(backend: Backend) {
        let app = spawn_app(backend).await;
        let admin = app.admin().await.access;
        let user = app.register("rita").await;
        let plain = app.sign_in(&user).await.access;

        let r = app.get_auth("/api/rbac/permissions", &plain).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let perms = names(r.data());
        for builtin in ["permissions:manage", "roles:manage", "roles:assign-permission",
            "users:assign-role", "users:read", "users:manage", "audit:read",
            "security_questions:manage", "system:maintain"] {
            assert!(perms.contains(&builtin.to_owned()), "{builtin} missing from {perms:?}");
        }
        let r = app.get_auth("/api/rbac/roles", &plain).await;
        assert_eq!(names(r.data()), ["admin", "user"]);
        assert!(r.data()[0]["builtin"].as_bool().unwrap());
        for field in ["id", "name", "description", "created_at", "updated_at"] {
            assert!(r.data()[0].get(field).is_some(), "{field}");
        }
        // New accounts hold the `user` role; the first administrator both.
        let r = app.get_auth(&format!("/api/rbac/users/{}/roles", user.id), &plain).await;
        assert_eq!(names(r.data()), ["user"]);
        let admin_id = my_id(&app, &admin).await;
        let r = app.get_auth(&format!("/api/rbac/users/{admin_id}/roles"), &admin).await;
        assert_eq!(names(r.data()), ["admin", "user"]);

        // Create, read, rename, delete a permission.
        let id = create(&app, &admin, "permissions", "reports:read").await;
        let r = app.post_auth("/api/rbac/permissions", &admin, json!({"name": "reports:read"})).await;
        assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")));
        for bad in ["Reports:read", "reports", "reports:", "a:b:c", "rep orts:read", "", &"a".repeat(70)] {
            let r = app.post_auth("/api/rbac/permissions", &admin, json!({"name": bad})).await;
            assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_name")), "{bad}");
        }
        let r = app.post_auth("/api/rbac/permissions", &admin, json!({"name": 5})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        let r = app.get_auth(&format!("/api/rbac/permissions/{id}"), &plain).await;
        assert_eq!(r.data()["name"], "reports:read");
        let r = app.put_auth(&format!("/api/rbac/permissions/{id}"), &admin, json!({"name": "reports:view"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(app.get_auth("/api/rbac/permissions/by-name/reports:view", &plain).await.status, StatusCode::OK);
        assert_eq!(app.get_auth("/api/rbac/permissions/by-name/reports:read", &plain).await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.get_auth("/api/rbac/permissions/by-name/NOT%20A%20NAME", &plain).await.status, StatusCode::NOT_FOUND);
        let r = app.delete_auth(&format!("/api/rbac/permissions/{id}"), &admin).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(app.get_auth(&format!("/api/rbac/permissions/{id}"), &plain).await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.delete_auth(&format!("/api/rbac/permissions/{id}"), &admin).await.status, StatusCode::NOT_FOUND);

        // Built-ins keep their names and cannot be deleted; their descriptions can change.
        let users_read = permission_id(&app, &admin, "users:read").await;
        let admin_role = role_id(&app, &admin, "admin").await;
        let user_role = role_id(&app, &admin, "user").await;
        for (path, name) in [(format!("/api/rbac/permissions/{users_read}"), "users:see"),
            (format!("/api/rbac/roles/{admin_role}"), "boss"), (format!("/api/rbac/roles/{user_role}"), "member")] {
            let r = app.put_auth(&path, &admin, json!({"name": name})).await;
            assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::CONFLICT, Some("builtin_protected")), "{path}");
            let r = app.delete_auth(&path, &admin).await;
            assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::CONFLICT, Some("builtin_protected")), "{path}");
        }
        let r = app.put_auth(&format!("/api/rbac/roles/{user_role}"), &admin, json!({"description": "Everyone"})).await;
        assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::CONFLICT, Some("builtin_protected")), "{}", r.text);
        // Every account keeps the `user` role.
        let r = app.delete_auth(&format!("/api/rbac/users/{}/roles/{user_role}", user.id), &admin).await;
        assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::CONFLICT, Some("builtin_protected")), "{}", r.text);
        // Descriptions cannot hide text behind direction overrides or invisible characters.
        let r = app.post_auth("/api/rbac/roles", &admin, json!({"name": "spoof", "description": "safe\u{202e}txt.exe"})).await;
        assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_description")), "{}", r.text);
        // A permission created now is the administrators' at once (admin holds every one).
        let fresh = create(&app, &admin, "permissions", "fresh:do").await;
        let r = app.get_auth(&format!("/api/rbac/check-permission/{admin_id}/fresh:do"), &admin).await;
        assert_eq!(r.data()["allowed"], true, "{}", r.text);
        let freshers = create(&app, &admin, "roles", "freshers").await;
        let r = app.post_auth(&format!("/api/rbac/roles/{freshers}/permissions/{fresh}"), &admin, json!({})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        // The admin role's permissions are implicit: all of them, and not editable.
        let r = app.get_auth(&format!("/api/rbac/roles/{admin_role}/permissions"), &plain).await;
        assert_eq!(names(r.data()).len(), perms.len() + 1, "every permission, fresh:do included");
        let r = app.delete_auth(&format!("/api/rbac/roles/{admin_role}/permissions/{users_read}"), &admin).await;
        assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::CONFLICT, Some("builtin_protected")));

        // Changes need their permission; anonymous callers get 401; bad ids 400; unknown 404.
        assert_eq!(app.post_auth("/api/rbac/roles", &plain, json!({"name": "x"})).await.status, StatusCode::FORBIDDEN);
        assert_eq!(app.post_auth("/api/rbac/permissions", &plain, json!({"name": "x:y"})).await.status, StatusCode::FORBIDDEN);
        assert_eq!(app.delete_auth(&format!("/api/rbac/roles/{user_role}"), &plain).await.status, StatusCode::FORBIDDEN);
        assert_eq!(app.get("/api/rbac/roles").await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(app.get_auth("/api/rbac/roles/not-a-uuid", &plain).await.status, StatusCode::BAD_REQUEST);
        let unknown = uuid::Uuid::new_v4();
        assert_eq!(app.get_auth(&format!("/api/rbac/roles/{unknown}"), &plain).await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.get_auth(&format!("/api/rbac/roles/{unknown}/permissions"), &plain).await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.post_auth(&format!("/api/rbac/roles/{unknown}/permissions/{users_read}"), &admin, json!({})).await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.post_auth(&format!("/api/rbac/users/{unknown}/roles/{user_role}"), &admin, json!({})).await.status, StatusCode::NOT_FOUND);

        // Every change is audited with the caller as actor.
        let r = app.get_auth("/api/admin/audit?type=permission.created", &admin).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let events = r.data()["events"].as_array().cloned().unwrap_or_default();
        assert!(!events.is_empty() && events.iter().all(|e| e["actor_id"] == admin_id.as_str()), "{events:?}");
    }

    async fn a_role_works_from_the_next_request_and_stops_at_once(backend: Backend) {
        let app = spawn_app(backend).await;
        let admin = app.admin().await.access;
        let user = app.register("caio").await;
        let t = app.sign_in(&user).await;
        assert_eq!(app.get_auth("/api/admin/audit", &t.access).await.status, StatusCode::FORBIDDEN);

        let role = create(&app, &admin, "roles", "auditor").await;
        let audit_read = permission_id(&app, &admin, "audit:read").await;
        let r = app.post_auth(&format!("/api/rbac/roles/{role}/permissions/{audit_read}"), &admin, json!({})).await;
        assert_eq!((r.status, &r.data()["changed"]), (StatusCode::OK, &json!(true)), "{}", r.text);
        let r = app.post_auth(&format!("/api/rbac/roles/{role}/permissions/{audit_read}"), &admin, json!({})).await;
        assert_eq!(r.data()["changed"], false);
        let r = app.post_auth(&format!("/api/rbac/users/{}/roles/{role}", user.id), &admin, json!({})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);

        // The same access token, next request: allowed.
        assert_eq!(app.get_auth("/api/admin/audit", &t.access).await.status, StatusCode::OK);
        let r = app.get_auth(&format!("/api/rbac/check-permission/{}/audit:read", user.id), &t.access).await;
        assert_eq!(r.data()["allowed"], true, "{}", r.text);
        // New tokens name the role; introspection-free clients can read it.
        let fresh = app.sign_in(&user).await;
        assert_eq!(claims(&fresh.access)["roles"], json!(["auditor", "user"]));
        let r = app.get_auth("/api/auth/me", &fresh.access).await;
        assert_eq!(r.data()["roles"], json!(["auditor", "user"]));

        // Taking the permission from the role: refused on the very next request.
        let r = app.delete_auth(&format!("/api/rbac/roles/{role}/permissions/{audit_read}"), &admin).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(app.get_auth("/api/admin/audit", &t.access).await.status, StatusCode::FORBIDDEN);
        app.post_auth(&format!("/api/rbac/roles/{role}/permissions/{audit_read}"), &admin, json!({})).await;
        assert_eq!(app.get_auth("/api/admin/audit", &t.access).await.status, StatusCode::OK);
        // Taking the role from the user, or deleting the role: the same.
        let r = app.delete_auth(&format!("/api/rbac/users/{}/roles/{role}", user.id), &admin).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(app.get_auth("/api/admin/audit", &t.access).await.status, StatusCode::FORBIDDEN);
        app.post_auth(&format!("/api/rbac/users/{}/roles/{role}", user.id), &admin, json!({})).await;
        assert_eq!(app.get_auth("/api/admin/audit", &t.access).await.status, StatusCode::OK);
        assert_eq!(app.delete_auth(&format!("/api/rbac/roles/{role}"), &admin).await.status, StatusCode::OK);
        assert_eq!(app.get_auth("/api/admin/audit", &t.access).await.status, StatusCode::FORBIDDEN);
        let r = app.get_auth(&format!("/api/rbac/check-permission/{}/audit:read", user.id), &t.access).await;
        assert_eq!(r.data()["allowed"], false);

        // The event names the target user and the caller.
        let r = app.get_auth(&format!("/api/admin/audit?type=user.role_assigned&user_id={}", user.id), &admin).await;
        let events = r.data()["events"].as_array().cloned().unwrap_or_default();
        assert!(!events.is_empty(), "{}", r.text);
        assert_eq!(events[0]["user_id"], user.id.as_str());
        assert_eq!(events[0]["actor_id"], my_id(&app, &admin).await.as_str());
    }

    async fn nobody_hands_out_more_than_they_hold(backend: Backend) {
        let app = spawn_app(backend).await;
        let admin = app.admin().await.access;
        let bob = app.register("bob").await;
        let eve = app.register("eve").await;
        // Bob may assign roles and grant permissions, and read users: nothing else.
        let delegator = create(&app, &admin, "roles", "delegator").await;
        for p in ["users:assign-role", "roles:assign-permission", "users:read"] {
            let pid = permission_id(&app, &admin, p).await;
            let r = app.post_auth(&format!("/api/rbac/roles/{delegator}/permissions/{pid}"), &admin, json!({})).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        }
        app.post_auth(&format!("/api/rbac/users/{}/roles/{delegator}", bob.id), &admin, json!({})).await;
        let t = app.sign_in(&bob).await.access;
        let admin_role = role_id(&app, &admin, "admin").await;
        let audit_read = permission_id(&app, &admin, "audit:read").await;
        let users_read = permission_id(&app, &admin, "users:read").await;
        let auditor = create(&app, &admin, "roles", "auditor").await;
        app.post_auth(&format!("/api/rbac/roles/{auditor}/permissions/{audit_read}"), &admin, json!({})).await;
        let helper = create(&app, &admin, "roles", "helper").await;

        // The admin role, or a role with a permission Bob lacks, for himself or anyone: refused.
        for (target, role) in [(&bob.id, &admin_role), (&eve.id, &admin_role), (&bob.id, &auditor), (&eve.id, &auditor)] {
            let r = app.post_auth(&format!("/api/rbac/users/{target}/roles/{role}"), &t, json!({})).await;
            assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "{}", r.text);
        }
        // Granting a permission he lacks, to his own role or another: refused.
        for role in [&delegator, &helper] {
            let r = app.post_auth(&format!("/api/rbac/roles/{role}/permissions/{audit_read}"), &t, json!({})).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        }
        // Creating roles or permissions needs roles:manage / permissions:manage.
        assert_eq!(app.post_auth("/api/rbac/roles", &t, json!({"name": "mine"})).await.status, StatusCode::FORBIDDEN);
        // Nothing changed, and Bob still cannot read the audit log.
        let r = app.get_auth(&format!("/api/rbac/users/{}/roles", bob.id), &admin).await;
        assert_eq!(names(r.data()), ["delegator", "user"]);
        assert_eq!(app.get_auth("/api/admin/audit", &t).await.status, StatusCode::FORBIDDEN);
        // What he holds he may pass on.
        let r = app.post_auth(&format!("/api/rbac/roles/{helper}/permissions/{users_read}"), &t, json!({})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let r = app.post_auth(&format!("/api/rbac/users/{}/roles/{helper}", eve.id), &t, json!({})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        // Nor may he take the admin role away from the administrator.
        let admin_id = my_id(&app, &admin).await;
        let r = app.delete_auth(&format!("/api/rbac/users/{admin_id}/roles/{admin_role}"), &t).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        // The refusals are audited as failures with Bob as the actor.
        let r = app.get_auth("/api/admin/audit?type=user.role_assigned", &admin).await;
        let failures: Vec<Value> = r.data()["events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e["outcome"] == "failure")
            .collect();
        assert!(failures.len() >= 4, "{}", r.text);
        // (An event about oneself names no separate actor.)
        assert!(
            failures.iter().all(|e| e["actor_id"] == bob.id.as_str()
                || (e["actor_id"].is_null() && e["user_id"] == bob.id.as_str())),
            "{failures:?}"
        );

        // Other users' roles and checks need users:read (Eve now has it through `helper`).
        let carl = app.register("carl").await;
        let c = app.sign_in(&carl).await.access;
        assert_eq!(app.get_auth(&format!("/api/rbac/users/{}/roles", eve.id), &c).await.status, StatusCode::FORBIDDEN);
        assert_eq!(app.get_auth(&format!("/api/rbac/check-permission/{}/users:read", eve.id), &c).await.status, StatusCode::FORBIDDEN);
        let r = app.get_auth(&format!("/api/rbac/check-permission/{}/users:read", carl.id), &c).await;
        assert_eq!(r.data()["allowed"], false);
        let e = app.sign_in(&eve).await.access;
        let r = app.get_auth(&format!("/api/rbac/check-permission/{}/users:read", eve.id), &e).await;
        assert_eq!(r.data()["allowed"], true);
        let r = app.get_auth(&format!("/api/rbac/check-permission/{}/no:such", carl.id), &e).await;
        assert_eq!((r.status, &r.data()["allowed"]), (StatusCode::OK, &json!(false)));
        let r = app.get_auth(&format!("/api/rbac/check-permission/{}/users:read", uuid::Uuid::new_v4()), &e).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(app.get_auth(&format!("/api/rbac/users/{}/roles", uuid::Uuid::new_v4()), &e).await.status, StatusCode::NOT_FOUND);
    }

    async fn managing_users_or_names_never_reaches_beyond_what_you_hold(backend: Backend) {
        let app = spawn_app(backend).await;
        let admin = app.admin().await.access;
        let admin_id = my_id(&app, &admin).await;
        let mgr = app.register("gestora").await;
        let plain = app.register("plain").await;
        let managers = create(&app, &admin, "roles", "managers").await;
        for p in ["users:manage", "users:read", "permissions:manage", "roles:manage"] {
            let pid = permission_id(&app, &admin, p).await;
            app.post_auth(&format!("/api/rbac/roles/{managers}/permissions/{pid}"), &admin, json!({})).await;
        }
        app.post_auth(&format!("/api/rbac/users/{}/roles/{managers}", mgr.id), &admin, json!({})).await;
        let t = app.sign_in(&mgr).await.access;

        // users:manage reaches accounts holding nothing more than the caller: not the admin.
        for (method, path, body) in [
            ("post", format!("/api/users/{admin_id}/change-password"), json!({"new_password": "Pwned-Admin-Pass-77"})),
            ("post", format!("/api/users/{admin_id}/2fa/reset"), json!({})),
            ("put", format!("/api/users/{admin_id}"), json!({"is_active": false})),
            ("put", format!("/api/users/{admin_id}"), json!({"first_name": "Pwned"})),
            ("delete", format!("/api/users/{admin_id}"), json!({})),
            ("post", format!("/api/auth/revoke-all/{admin_id}"), json!({})),
            ("post", "/api/auth/unlock".to_owned(), json!({"user_id": admin_id})),
        ] {
            let r = match method {
                "post" => app.post_auth(&path, &t, body).await,
                "put" => app.put_auth(&path, &t, body).await,
                _ => app.delete_auth(&path, &t).await,
            };
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{method} {path}: {}", r.text);
        }
        assert_eq!(app.me_status(&admin).await, StatusCode::OK);
        app.sign_in_as("admin", crate::helpers::ADMIN_PASSWORD).await;
        // A plain account is within reach.
        let r = app.post_auth(&format!("/api/users/{}/change-password", plain.id), &t, json!({"new_password": "Outra-S3nha-Boa"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);

        // permissions:manage / roles:manage rename or delete only what the caller holds.
        let billing = create(&app, &admin, "permissions", "billing:admin").await;
        let finance = create(&app, &admin, "roles", "finance").await;
        app.post_auth(&format!("/api/rbac/roles/{finance}/permissions/{billing}"), &admin, json!({})).await;
        for (method, path) in [
            ("delete", format!("/api/rbac/permissions/{billing}")),
            ("put", format!("/api/rbac/permissions/{billing}")),
            ("delete", format!("/api/rbac/roles/{finance}")),
            ("put", format!("/api/rbac/roles/{finance}")),
        ] {
            let r = if method == "put" {
                app.put_auth(&path, &t, json!({"name": if path.contains("roles") { "fin" } else { "billing:view" }})).await
            } else {
                app.delete_auth(&path, &t).await
            };
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{method} {path}: {}", r.text);
        }
        let r = app.get_auth(&format!("/api/rbac/roles/{finance}/permissions"), &admin).await;
        assert_eq!(names(r.data()), ["billing:admin"]);
        // What the caller created and holds, they may rename and delete.
        let mine = create(&app, &t, "roles", "mine").await;
        assert_eq!(app.put_auth(&format!("/api/rbac/roles/{mine}"), &t, json!({"name": "ours"})).await.status, StatusCode::OK);
        assert_eq!(app.delete_auth(&format!("/api/rbac/roles/{mine}"), &t).await.status, StatusCode::OK);
        // The rename event keeps the old name.
        let r = app.get_auth("/api/admin/audit?type=role.updated", &admin).await;
        let events = r.data()["events"].as_array().cloned().unwrap_or_default();
        assert!(events.iter().any(|e| e["details"]["name"] == "mine" && e["details"]["new_name"] == "ours"), "{events:?}");

        // Bearer introspection needs tokens:introspect (users:manage is not enough).
        let r = app
            .request(
                app.client
                    .post(format!("{}/api/auth/introspect", app.url))
                    .bearer_auth(&t)
                    .form(&[("token", admin.as_str())]),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        let r = app
            .request(
                app.client
                    .post(format!("{}/api/auth/introspect", app.url))
                    .bearer_auth(&admin)
                    .form(&[("token", t.as_str())]),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.body["roles"], json!(["managers", "user"]));
        assert!(r.body["permissions"].as_array().unwrap().contains(&json!("users:manage")));
    }

    async fn the_last_administrator_stays(backend: Backend) {
        let app = spawn_app(backend).await;
        let admin = app.admin().await.access;
        let admin_id = my_id(&app, &admin).await;
        let admin_role = role_id(&app, &admin, "admin").await;
        let r = app.delete_auth(&format!("/api/rbac/users/{admin_id}/roles/{admin_role}"), &admin).await;
        assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::CONFLICT, Some("last_admin")), "{}", r.text);
        // A custom role holding roles:manage: its last holder cannot lose it either.
        let keeper = create(&app, &admin, "roles", "keeper").await;
        let roles_manage = permission_id(&app, &admin, "roles:manage").await;
        app.post_auth(&format!("/api/rbac/roles/{keeper}/permissions/{roles_manage}"), &admin, json!({})).await;

        // Two administrators remove each other's role at the same moment: one stays.
        let second = app.register("segunda").await;
        let r = app.post_auth(&format!("/api/rbac/users/{}/roles/{admin_role}", second.id), &admin, json!({})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let other = app.sign_in(&second).await.access;
        let first_path = format!("/api/rbac/users/{}/roles/{admin_role}", second.id);
        let second_path = format!("/api/rbac/users/{admin_id}/roles/{admin_role}");
        let (a, b) = tokio::join!(
            app.delete_auth(&first_path, &admin),
            app.delete_auth(&second_path, &other),
        );
        // One wins; the other is refused, as `last_admin` or (when the winner's removal came
        // first) because its caller no longer holds the permission at all.
        let mut statuses = [a.status, b.status];
        statuses.sort();
        assert_eq!(statuses[0], StatusCode::OK, "{} / {}", a.text, b.text);
        assert!(matches!(statuses[1], StatusCode::CONFLICT | StatusCode::FORBIDDEN), "{} / {}", a.text, b.text);
        let mut survivors = Vec::new();
        for (id, token) in [(&admin_id, &admin), (&second.id, &other)] {
            let r = app.get_auth(&format!("/api/rbac/users/{id}/roles"), token).await;
            if names(r.data()).contains(&"admin".to_owned()) {
                survivors.push(token.clone());
            }
        }
        assert_eq!(survivors.len(), 1);
        // Deleting the custom role is fine while an administrator remains.
        let r = app.delete_auth(&format!("/api/rbac/roles/{keeper}"), &survivors[0]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_removed_role_stops_working_on_another_instance_within_a_second() {
    if std::env::var("TEST_POSTGRES_URL").is_err() {
        eprintln!("TEST_POSTGRES_URL is not set: skipping");
        return;
    }
    let a = spawn_app(Backend::Postgres).await;
    let b = spawn_twin(&a).await;
    let admin = a.admin().await.access;
    let user = a.register("nuno").await;
    let t = a.sign_in(&user).await.access;
    let role = create(&a, &admin, "roles", "auditor").await;
    let audit_read = permission_id(&a, &admin, "audit:read").await;
    a.post_auth(
        &format!("/api/rbac/roles/{role}/permissions/{audit_read}"),
        &admin,
        json!({}),
    )
    .await;
    a.post_auth(
        &format!("/api/rbac/users/{}/roles/{role}", user.id),
        &admin,
        json!({}),
    )
    .await;
    // B serves the grant (and caches it).
    let start = Instant::now();
    while b.get_auth("/api/admin/audit", &t).await.status != StatusCode::OK {
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "B never saw the new role"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        b.get_auth("/api/admin/audit", &t).await.status,
        StatusCode::OK
    );
    let r = a
        .delete_auth(&format!("/api/rbac/users/{}/roles/{role}", user.id), &admin)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let start = Instant::now();
    while b.get_auth("/api/admin/audit", &t).await.status != StatusCode::FORBIDDEN {
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "instance B still honours the removed role after {:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
