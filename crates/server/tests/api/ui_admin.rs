//! The admin console (`/ui/admin`) over plain HTTP, as a browser without JavaScript and as the
//! enhanced form: each page and form needs its permission, every form its CSRF token; refused
//! escalations, built-ins and the last administrator come back as messages and change nothing;
//! an administrator ends another account's session, signs it out everywhere and deletes it; the
//! audit log's filters and its CSV export across several pages of the store's cursor. The browser
//! suite (tests/ui/admin.test.mjs) drives the same pages in Chromium.

use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::browser::Jar;
use crate::helpers::{ADMIN_PASSWORD, PASSWORD, TestApp, spawn_app};
use crate::ui::{form_token, get, location, login_form, post};

/// Signs a browser in through the sign-in form; returns its cookies and a form token.
async fn ui_sign_in(app: &TestApp, login: &str, password: &str) -> (Jar, String) {
    let mut jar = Jar::default();
    let token = login_form(app, &mut jar).await;
    let r = post(
        app,
        &mut jar,
        "/ui/login",
        &[
            ("csrf_token", &token),
            ("identifier", login),
            ("password", password),
        ],
        false,
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let page = get(app, &mut jar, "/ui/account", "en").await;
    let csrf = form_token(&page);
    (jar, csrf)
}

async fn id_of(app: &TestApp, token: &str, what: &str, name: &str) -> String {
    let r = app
        .get_auth(&format!("/api/rbac/{what}/by-name/{name}"), token)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.data()["id"].as_str().unwrap().to_owned()
}

/// A role made through the API, granting `permissions`.
async fn role_with(app: &TestApp, token: &str, name: &str, permissions: &[&str]) -> String {
    let r = app
        .post_auth("/api/rbac/roles", token, json!({"name": name}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let role = r.data()["id"].as_str().unwrap().to_owned();
    for p in permissions {
        let perm = id_of(app, token, "permissions", p).await;
        let r = app
            .post_auth(
                &format!("/api/rbac/roles/{role}/permissions/{perm}"),
                token,
                json!({}),
            )
            .await;
        assert!(r.status.is_success(), "{}", r.text);
    }
    role
}

async fn give(app: &TestApp, token: &str, user: &str, role: &str) {
    let r = app
        .post_auth(
            &format!("/api/rbac/users/{user}/roles/{role}"),
            token,
            json!({}),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text);
}

async fn roles_of(app: &TestApp, token: &str, user: &str) -> Vec<String> {
    let r = app
        .get_auth(&format!("/api/rbac/users/{user}/roles"), token)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.data()
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_owned())
        .collect()
}

async fn role_names(app: &TestApp, token: &str) -> Vec<String> {
    let r = app.get_auth("/api/rbac/roles", token).await;
    r.data()
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_owned())
        .collect()
}

both_backends! {
    async fn console_pages_need_their_permission_and_its_forms_change_nothing_for_others(backend: Backend) {
        let app = spawn_app(backend).await;
        let admin = app.admin().await;
        let admin_id = app.get_auth("/api/auth/me", &admin.access).await.data()["id"].as_str().unwrap().to_owned();
        let user = app.register("uiconplain").await;
        let custom = role_with(&app, &admin.access, "custom", &[]).await;
        let perm = app.post_auth("/api/rbac/permissions", &admin.access, json!({"name": "reports:read"})).await;
        let perm = perm.data()["id"].as_str().unwrap().to_owned();
        let admin_role = id_of(&app, &admin.access, "roles", "admin").await;
        let users_read = id_of(&app, &admin.access, "permissions", "users:read").await;
        let pages = [
            "/ui/admin".to_owned(),
            format!("/ui/admin/users/{admin_id}"),
            "/ui/admin/roles".to_owned(),
            format!("/ui/admin/roles/{custom}"),
            format!("/ui/admin/permissions/{perm}"),
            "/ui/admin/audit".to_owned(),
            "/ui/admin/audit.csv".to_owned(),
        ];
        // Arrange: a visitor, then a signed-in user without any console permission.
        let mut visitor = Jar::default();
        for path in &pages {
            let r = get(&app, &mut visitor, path, "en").await;
            assert_eq!(r.status, StatusCode::SEE_OTHER, "{path}");
            assert_eq!(location(&r), "/ui/login", "{path}");
        }
        let (mut jar, csrf) = ui_sign_in(&app, &user.username, PASSWORD).await;
        for path in &pages {
            let r = get(&app, &mut jar, path, "en").await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
            assert!(r.text.contains("You are not allowed to do this."), "{path}");
        }
        let account = get(&app, &mut jar, "/ui/account", "en").await;
        for link in ["href=\"/ui/admin\"", "href=\"/ui/admin/roles\"", "href=\"/ui/admin/audit\"", "href=\"/ui/admin/webhooks\""] {
            assert!(!account.text.contains(link), "no {link} in the navigation");
        }
        // Act: every form, with a valid token.
        let forms: Vec<(String, Vec<(&str, &str)>)> = vec![
            (format!("/ui/admin/users/{}/assign-role?back=user", user.id), vec![("role_id", &admin_role)]),
            (format!("/ui/admin/users/{admin_id}/remove-role?back=user"), vec![("role_id", &admin_role)]),
            (format!("/ui/admin/users/{admin_id}/disable"), vec![]),
            (format!("/ui/admin/users/{admin_id}/sign-out-all?back=user"), vec![]),
            (format!("/ui/admin/users/{admin_id}/revoke-session?back=user"), vec![("session_id", &custom)]),
            (format!("/ui/admin/users/{admin_id}/delete?back=user"), vec![("confirm", "yes")]),
            (format!("/ui/admin/users/{admin_id}/delete?back=user"), vec![]),
            ("/ui/admin/roles".to_owned(), vec![("name", "sneaky")]),
            ("/ui/admin/permissions".to_owned(), vec![("name", "sneaky:do")]),
            (format!("/ui/admin/roles/{custom}"), vec![("name", "renamed")]),
            (format!("/ui/admin/roles/{custom}/grant"), vec![("permission_id", &users_read)]),
            (format!("/ui/admin/roles/{custom}/delete"), vec![("confirm", "yes")]),
            (format!("/ui/admin/roles/{custom}/delete"), vec![]),
            (format!("/ui/admin/permissions/{perm}"), vec![("name", "reports:write")]),
            (format!("/ui/admin/permissions/{perm}/delete"), vec![("confirm", "yes")]),
        ];
        for (path, fields) in &forms {
            let mut fields = fields.clone();
            fields.push(("csrf_token", &csrf));
            for json in [false, true] {
                let r = post(&app, &mut jar, path, &fields, json).await;
                assert_eq!(r.status, StatusCode::FORBIDDEN, "{path} json={json}: {}", r.text);
                if json {
                    assert_eq!(r.body["code"], "forbidden", "{path}");
                }
            }
        }
        // Assert: nothing changed.
        assert_eq!(roles_of(&app, &admin.access, &user.id).await, ["user"]);
        assert_eq!(roles_of(&app, &admin.access, &admin_id).await, ["admin", "user"]);
        assert_eq!(role_names(&app, &admin.access).await, ["admin", "custom", "user"]);
        let perms = app.get_auth(&format!("/api/rbac/roles/{custom}/permissions"), &admin.access).await;
        assert!(perms.data().as_array().unwrap().is_empty());
        assert_eq!(app.get_auth(&format!("/api/rbac/permissions/{perm}"), &admin.access).await.data()["name"], "reports:read");
        assert_eq!(app.me_status(&admin.access).await, StatusCode::OK, "the administrator's session lives");
        assert!(app.auth.find_user(&admin_id).await.unwrap().unwrap().is_active);
    }

    async fn every_console_form_refuses_a_missing_or_foreign_csrf_token(backend: Backend) {
        let app = spawn_app(backend).await;
        let admin = app.admin().await;
        let user = app.register("uiconcsrf").await;
        let custom = role_with(&app, &admin.access, "custom", &[]).await;
        let user_role = id_of(&app, &admin.access, "roles", "user").await;
        let users_read = id_of(&app, &admin.access, "permissions", "users:read").await;
        let (mut jar, _) = ui_sign_in(&app, "admin", ADMIN_PASSWORD).await;
        let other = {
            let mut elsewhere = Jar::default();
            login_form(&app, &mut elsewhere).await
        };
        let forms: Vec<(String, Vec<(&str, &str)>)> = vec![
            (format!("/ui/admin/users/{}/assign-role?back=user", user.id), vec![("role_id", &custom)]),
            (format!("/ui/admin/users/{}/remove-role?back=user", user.id), vec![("role_id", &user_role)]),
            (format!("/ui/admin/users/{}/disable?back=user", user.id), vec![]),
            (format!("/ui/admin/users/{}/sign-out-all?back=user", user.id), vec![]),
            (format!("/ui/admin/users/{}/delete?back=user", user.id), vec![("confirm", "yes")]),
            ("/ui/admin/roles".to_owned(), vec![("name", "csrfrole")]),
            ("/ui/admin/permissions".to_owned(), vec![("name", "csrf:perm")]),
            (format!("/ui/admin/roles/{custom}"), vec![("name", "renamed")]),
            (format!("/ui/admin/roles/{custom}/grant"), vec![("permission_id", &users_read)]),
            (format!("/ui/admin/roles/{custom}/delete"), vec![("confirm", "yes")]),
        ];
        for (path, fields) in &forms {
            for token in ["", "forged", other.as_str()] {
                let mut fields = fields.clone();
                fields.push(("csrf_token", token));
                let r = post(&app, &mut jar, path, &fields, false).await;
                assert_eq!(r.status, StatusCode::FORBIDDEN, "{path} token {token:?}");
                assert!(r.headers.get("location").is_none());
                let r = post(&app, &mut jar, path, &fields, true).await;
                assert_eq!(r.body["code"], "csrf_failed", "{path} token {token:?}");
            }
        }
        assert_eq!(roles_of(&app, &admin.access, &user.id).await, ["user"]);
        assert_eq!(role_names(&app, &admin.access).await, ["admin", "custom", "user"]);
        let perms = app.get_auth(&format!("/api/rbac/roles/{custom}/permissions"), &admin.access).await;
        assert!(perms.data().as_array().unwrap().is_empty());
        let found = app.auth.find_user(&user.id).await.unwrap().expect("not deleted");
        assert!(found.is_active);
    }

    async fn refused_escalations_are_messages_and_only_roles_within_reach_are_offered(backend: Backend) {
        let app = spawn_app(backend).await;
        let admin = app.admin().await;
        let delegate = app.register("uicondelegate").await;
        let target = app.register("uicontarget").await;
        let assigner = role_with(&app, &admin.access, "assigner", &["users:read", "users:assign-role", "roles:assign-permission"]).await;
        let auditor = role_with(&app, &admin.access, "auditor", &["audit:read"]).await;
        let reader = role_with(&app, &admin.access, "reader", &["users:read"]).await;
        give(&app, &admin.access, &delegate.id, &assigner).await;
        let (mut jar, csrf) = ui_sign_in(&app, &delegate.username, PASSWORD).await;

        // The page offers what the delegate may give, and says why the rest is missing.
        let page = get(&app, &mut jar, &format!("/ui/admin/users/{}", target.id), "en").await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.text.contains(&format!("<option value=\"{reader}\">reader</option>")));
        assert!(!page.text.contains(&format!("value=\"{auditor}\"")), "audit:read is not the delegate's to give");
        assert!(page.text.contains("Only roles whose permissions you hold yourself are offered."));
        assert!(!page.text.contains("Delete account") && !page.text.contains("/sign-out-all"), "no users:manage, no actions");
        assert!(!page.text.contains("Recent security events"), "no audit:read, no events");

        // Posted anyway: refused in words, plain and enhanced, and nothing changes.
        let path = format!("/ui/admin/users/{}/assign-role?back=user", target.id);
        let r = post(&app, &mut jar, &path, &[("csrf_token", &csrf), ("role_id", &auditor)], false).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert!(r.text.contains("You can only give or take away roles whose permissions you hold yourself."), "{}", r.text);
        assert!(r.text.contains("<h1 class=\"page-title wrap\">uicontarget"), "the user's page again");
        let r = post(&app, &mut jar, &path, &[("csrf_token", &csrf), ("role_id", &auditor)], true).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(r.body["code"], "forbidden");
        assert_eq!(r.body["message"], "You can only give or take away roles whose permissions you hold yourself.");
        assert_eq!(roles_of(&app, &admin.access, &target.id).await, ["user"]);
        let audit_read = id_of(&app, &admin.access, "permissions", "audit:read").await;
        let r = post(&app, &mut jar, &format!("/ui/admin/roles/{reader}/grant"), &[("csrf_token", &csrf), ("permission_id", &audit_read)], false).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert!(r.text.contains("You can only grant or take back permissions you hold yourself."));
        let perms = app.get_auth(&format!("/api/rbac/roles/{reader}/permissions"), &admin.access).await;
        assert_eq!(perms.data().as_array().unwrap().len(), 1);
        let events = app.get_auth("/api/admin/audit?type=user.role_assigned", &admin.access).await;
        let refused = events.data()["events"].as_array().unwrap().iter()
            .find(|e| e["outcome"] == "failure").expect("the refusal is audited");
        assert_eq!(refused["actor_id"], delegate.id.as_str());

        // What is within reach works.
        let r = post(&app, &mut jar, &path, &[("csrf_token", &csrf), ("role_id", &reader)], false).await;
        assert_eq!(location(&r), format!("/ui/admin/users/{}?notice=role_assigned", target.id));
        assert_eq!(roles_of(&app, &admin.access, &target.id).await, ["reader", "user"]);
    }

    async fn a_delegate_cannot_change_accounts_or_roles_that_hold_more_than_they_do(backend: Backend) {
        let app = spawn_app(backend).await;
        let admin = app.admin().await;
        let admin_id = app.get_auth("/api/auth/me", &admin.access).await.data()["id"].as_str().unwrap().to_owned();
        let helper = app.register("uiconhelper").await;
        let plain = app.register("uiconplainer").await;
        let staff = role_with(&app, &admin.access, "staff", &["users:read", "users:manage", "roles:manage", "permissions:manage"]).await;
        let auditor = role_with(&app, &admin.access, "auditor", &["audit:read"]).await;
        let perm = app.post_auth("/api/rbac/permissions", &admin.access, json!({"name": "reports:read"})).await;
        let perm = perm.data()["id"].as_str().unwrap().to_owned();
        give(&app, &admin.access, &helper.id, &staff).await;
        let (mut jar, csrf) = ui_sign_in(&app, &helper.username, PASSWORD).await;

        // The administrator's account: readable, not changeable.
        let page = get(&app, &mut jar, &format!("/ui/admin/users/{admin_id}"), "en").await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(!page.text.contains("/disable?") && !page.text.contains("Delete account"));
        assert!(page.text.contains("This account holds permissions you do not"));
        let r = post(&app, &mut jar, &format!("/ui/admin/users/{admin_id}/disable?back=user"), &[("csrf_token", &csrf)], false).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert!(r.text.contains("You are not allowed to do this."), "the refusal is on the page");
        assert!(app.auth.find_user(&admin_id).await.unwrap().unwrap().is_active);
        // A plain account: the actions are there and work; the list offers them only there.
        let list = get(&app, &mut jar, "/ui/admin", "en").await;
        assert!(!list.text.contains(&format!("/ui/admin/users/{admin_id}/disable")));
        assert!(list.text.contains(&format!("/ui/admin/users/{}/disable", plain.id)));
        let r = post(&app, &mut jar, &format!("/ui/admin/users/{}/disable?back=user", plain.id), &[("csrf_token", &csrf)], false).await;
        assert_eq!(location(&r), format!("/ui/admin/users/{}?notice=disabled", plain.id));
        assert!(!app.auth.find_user(&plain.id).await.unwrap().unwrap().is_active);

        // A role or permission granting what they lack: no form, and refused in words.
        let page = get(&app, &mut jar, &format!("/ui/admin/roles/{auditor}"), "en").await;
        assert!(!page.text.contains("name=\"name\"") && !page.text.contains("/delete\""));
        assert!(page.text.contains("Only someone who holds every permission of this role can change or delete it."));
        let r = post(&app, &mut jar, &format!("/ui/admin/roles/{auditor}/delete"), &[("csrf_token", &csrf), ("confirm", "yes")], false).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert!(r.text.contains("You can only change or delete a role whose permissions you hold yourself."));
        assert!(role_names(&app, &admin.access).await.contains(&"auditor".to_owned()));
        let page = get(&app, &mut jar, &format!("/ui/admin/permissions/{perm}"), "en").await;
        assert!(page.text.contains("Only someone who holds this permission can change or delete it."));
        let r = post(&app, &mut jar, &format!("/ui/admin/permissions/{perm}"), &[("csrf_token", &csrf), ("name", "reports:all"), ("description", "")], true).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(r.body["message"], "You can only change or delete a permission you hold yourself.");
        assert_eq!(app.get_auth(&format!("/api/rbac/permissions/{perm}"), &admin.access).await.data()["name"], "reports:read");
    }

    async fn the_user_list_searches_and_filters_and_keeps_them_through_an_action(backend: Backend) {
        let app = spawn_app(backend).await;
        let admin = app.admin().await;
        let ana = app.register("uiconana").await;
        let anabel = app.register("uiconanabel").await;
        let bruno = app.register("uiconbruno").await;
        let support = role_with(&app, &admin.access, "support", &[]).await;
        give(&app, &admin.access, &anabel.id, &support).await;
        for i in 0..5 {
            app.sign_in_as_status(&bruno.username, &format!("Wrong-{i}-pass")).await;
        }
        let (mut jar, csrf) = ui_sign_in(&app, "admin", ADMIN_PASSWORD).await;
        let listed = |r: &crate::helpers::Reply| -> Vec<String> {
            ["uiconana", "uiconanabel", "uiconbruno", "admin"]
                .into_iter()
                .filter(|u| r.text.contains(&format!("><strong>{u}</strong></a>")))
                .map(str::to_owned)
                .collect()
        };

        // Arrange / Act / Assert: each filter, and the page keeps the choices.
        let r = get(&app, &mut jar, "/ui/admin?q=UICONANA", "en").await;
        assert_eq!(listed(&r), ["uiconana", "uiconanabel"], "a case-insensitive prefix");
        assert!(r.text.contains("value=\"UICONANA\""));
        let r = get(&app, &mut jar, "/ui/admin?q=uicon&role=support", "en").await;
        assert_eq!(listed(&r), ["uiconanabel"]);
        assert!(r.text.contains("<option value=\"support\" selected>"));
        let r = get(&app, &mut jar, "/ui/admin?locked=yes", "en").await;
        assert_eq!(listed(&r), ["uiconbruno"]);
        let r = get(&app, &mut jar, "/ui/admin?q=nobody", "en").await;
        assert!(r.text.contains("No account matches."));
        let r = get(&app, &mut jar, "/ui/admin?q=%01bad", "en").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "a term the list cannot take is explained");

        // An action from a filtered page comes back to the same filters.
        let r = post(&app, &mut jar, &format!("/ui/admin/users/{}/disable?page=1&q=uiconana", ana.id), &[("csrf_token", &csrf)], false).await;
        assert_eq!(location(&r), "/ui/admin?page=1&q=uiconana&notice=disabled");
        let r = get(&app, &mut jar, location(&r), "en").await;
        assert!(r.text.contains("Account disabled."));
        assert_eq!(listed(&r), ["uiconana", "uiconanabel"]);
        let r = get(&app, &mut jar, "/ui/admin?q=uiconana&active=no", "en").await;
        assert_eq!(listed(&r), ["uiconana"]);

        // A password-reset link, mailed on the account's behalf, from its page.
        let page = get(&app, &mut jar, &format!("/ui/admin/users/{}", anabel.id), "en").await;
        assert!(page.text.contains("/send-password-reset?back=user"));
        let r = post(&app, &mut jar, &format!("/ui/admin/users/{}/send-password-reset?back=user", anabel.id), &[("csrf_token", &csrf)], false).await;
        assert_eq!(location(&r), format!("/ui/admin/users/{}?notice=reset_link_sent", anabel.id));
        let mail = app.smtp.wait_for(&anabel.email, 1).await;
        assert!(mail[0].text().contains("/ui/reset-password?token="));
        // Not for a disabled account: no link that cannot work.
        let page = get(&app, &mut jar, &format!("/ui/admin/users/{}", ana.id), "en").await;
        assert!(!page.text.contains("/send-password-reset"));
    }

    async fn built_ins_offer_no_rename_or_delete_and_the_last_administrator_stays(backend: Backend) {
        let app = spawn_app(backend).await;
        let admin = app.admin().await;
        let admin_id = app.get_auth("/api/auth/me", &admin.access).await.data()["id"].as_str().unwrap().to_owned();
        let user_role = id_of(&app, &admin.access, "roles", "user").await;
        let admin_role = id_of(&app, &admin.access, "roles", "admin").await;
        let users_read = id_of(&app, &admin.access, "permissions", "users:read").await;
        let (mut jar, csrf) = ui_sign_in(&app, "admin", ADMIN_PASSWORD).await;

        let page = get(&app, &mut jar, &format!("/ui/admin/roles/{user_role}"), "en").await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(!page.text.contains("name=\"name\"") && !page.text.contains("name=\"description\""), "a built-in cannot change");
        assert!(!page.text.contains("/delete\""), "no delete form for a built-in");
        assert!(page.text.contains("A built-in role cannot be renamed, changed or deleted."));
        let page = get(&app, &mut jar, &format!("/ui/admin/roles/{admin_role}"), "en").await;
        assert!(!page.text.contains("/grant\"") && !page.text.contains("/revoke\""), "admin grants everything: no list to change");
        let page = get(&app, &mut jar, &format!("/ui/admin/permissions/{users_read}"), "en").await;
        assert!(!page.text.contains("name=\"name\"") && !page.text.contains("/delete\""));
        // Every account keeps `user`: no control to take it away.
        let own = get(&app, &mut jar, &format!("/ui/admin/users/{admin_id}"), "en").await;
        assert!(!own.text.contains(&format!("name=\"role_id\" value=\"{user_role}\"")), "user cannot be taken away");

        // Posted anyway: refused with the reason.
        let r = post(&app, &mut jar, &format!("/ui/admin/roles/{user_role}/delete"), &[("csrf_token", &csrf), ("confirm", "yes")], false).await;
        assert_eq!(r.status, StatusCode::CONFLICT);
        assert!(r.text.contains("Built-in roles and permissions cannot be renamed or deleted."));
        let r = post(&app, &mut jar, &format!("/ui/admin/permissions/{users_read}"), &[("csrf_token", &csrf), ("name", "users:peek"), ("description", "")], true).await;
        assert_eq!(r.status, StatusCode::CONFLICT);
        assert_eq!(r.body["code"], "builtin_protected");
        let r = post(&app, &mut jar, &format!("/ui/admin/roles/{user_role}"), &[("csrf_token", &csrf), ("name", "user"), ("description", "Everyone")], false).await;
        assert_eq!(r.status, StatusCode::CONFLICT);
        let r = post(&app, &mut jar, &format!("/ui/admin/users/{admin_id}/remove-role?back=user"), &[("csrf_token", &csrf), ("role_id", &user_role)], true).await;
        assert_eq!(r.status, StatusCode::CONFLICT);
        assert_eq!(r.body["code"], "builtin_protected");

        // A custom role's edit form saves what changed, and says when nothing did.
        let custom = role_with(&app, &admin.access, "custom", &[]).await;
        let path = format!("/ui/admin/roles/{custom}");
        let r = post(&app, &mut jar, &path, &[("csrf_token", &csrf), ("name", "custom"), ("description", "Something")], false).await;
        assert_eq!(location(&r), format!("{path}?notice=role_saved"));
        let r = post(&app, &mut jar, &path, &[("csrf_token", &csrf), ("name", "custom"), ("description", "Something")], false).await;
        assert_eq!(location(&r), format!("{path}?notice=nothing_changed"));
        let r = post(&app, &mut jar, &path, &[("csrf_token", &csrf), ("name", "Bad Name"), ("description", "")], false).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.text.contains("A role name is lowercase letters, digits, _ and -"));
        assert!(r.text.contains("value=\"Bad Name\""), "the form keeps what was typed");

        // The only administrator cannot give up the role, nor delete or disable themselves.
        let path = format!("/ui/admin/users/{admin_id}/remove-role?back=user");
        let r = post(&app, &mut jar, &path, &[("csrf_token", &csrf), ("role_id", &admin_role)], false).await;
        assert_eq!(r.status, StatusCode::CONFLICT);
        assert!(r.text.contains("This would leave no administrator"), "{}", r.text);
        let own = get(&app, &mut jar, &format!("/ui/admin/users/{admin_id}"), "en").await;
        assert!(!own.text.contains("Delete account") && !own.text.contains("/disable"), "no self-destruction offered");
        let r = post(&app, &mut jar, &format!("/ui/admin/users/{admin_id}/delete?back=user"), &[("csrf_token", &csrf), ("confirm", "yes")], true).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.body["code"], "cannot_delete_self");
        assert_eq!(roles_of(&app, &admin.access, &admin_id).await, ["admin", "user"]);
    }

    async fn an_administrator_ends_a_session_signs_out_everywhere_and_deletes_with_confirmation(backend: Backend) {
        let app = spawn_app(backend).await;
        let admin = app.admin().await;
        let user = app.register("uicondoomed").await;
        let other = app.register("uiconother").await;
        let first = app.sign_in(&user).await;
        let second = app.sign_in(&user).await;
        let others = app.sign_in(&other).await;
        let devices = app.get_auth("/api/auth/devices", &first.access).await;
        let sessions: Vec<String> = devices.data().as_array().unwrap().iter()
            .map(|d| d["id"].as_str().unwrap().to_owned()).collect();
        assert_eq!(sessions.len(), 2);
        let foreign = app.get_auth("/api/auth/devices", &others.access).await.data()[0]["id"].as_str().unwrap().to_owned();
        let (mut jar, csrf) = ui_sign_in(&app, "admin", ADMIN_PASSWORD).await;
        let page = get(&app, &mut jar, &format!("/ui/admin/users/{}", user.id), "en").await;
        for id in &sessions {
            assert!(page.text.contains(&format!("name=\"session_id\" value=\"{id}\"")), "session {id} listed");
        }
        let revoke = format!("/ui/admin/users/{}/revoke-session?back=user", user.id);

        // Another account's session is not this account's to end: not found, and it lives.
        let r = post(&app, &mut jar, &revoke, &[("csrf_token", &csrf), ("session_id", &foreign)], true).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(app.me_status(&others.access).await, StatusCode::OK);

        let r = post(&app, &mut jar, &revoke, &[("csrf_token", &csrf), ("session_id", &sessions[0])], false).await;
        assert_eq!(location(&r), format!("/ui/admin/users/{}?notice=user_session_revoked", user.id));
        let statuses = [app.me_status(&first.access).await, app.me_status(&second.access).await];
        assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 1, "one session ended at once: {statuses:?}");
        let events = app.get_auth(&format!("/api/admin/audit?user_id={}&type=session.revoked", user.id), &admin.access).await;
        assert_eq!(events.data()["events"][0]["details"]["session_id"], sessions[0].as_str());

        let r = post(&app, &mut jar, &format!("/ui/admin/users/{}/sign-out-all?back=user", user.id), &[("csrf_token", &csrf)], false).await;
        assert_eq!(location(&r), format!("/ui/admin/users/{}?notice=signed_out_everywhere", user.id));
        assert_eq!(app.me_status(&first.access).await, StatusCode::UNAUTHORIZED);
        assert_eq!(app.me_status(&second.access).await, StatusCode::UNAUTHORIZED);

        // Deleting needs the box ticked; then the account is gone.
        let delete = format!("/ui/admin/users/{}/delete?back=user", user.id);
        let r = post(&app, &mut jar, &delete, &[("csrf_token", &csrf)], false).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.text.contains("Tick the box to confirm the deletion."));
        assert!(app.auth.find_user(&user.id).await.unwrap().is_some());
        let r = post(&app, &mut jar, &delete, &[("csrf_token", &csrf), ("confirm", "yes")], false).await;
        assert_eq!(location(&r), "/ui/admin?notice=user_deleted");
        assert!(app.auth.find_user(&user.id).await.unwrap().is_none());
        let page = get(&app, &mut jar, &format!("/ui/admin/users/{}", user.id), "pt-BR").await;
        assert_eq!(page.status, StatusCode::NOT_FOUND);
        let list = get(&app, &mut jar, "/ui/admin?notice=user_deleted", "pt-BR").await;
        assert!(list.text.contains("Conta excluída."));
    }

    async fn the_audit_log_filters_and_exports_every_page_of_its_selection(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("uiconaudited").await;
        // More failed sign-ins than one page of the store's cursor (200) holds.
        for i in 0..230 {
            let r = app.request(app.client.post(format!("{}/api/auth/login", app.url))
                .header("user-agent", "@SUM(1+1)*cmd|' /C calc'!A0")
                .json(&json!({"username_or_email": user.username, "password": format!("Wrong-{i}-pass")}))).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        }
        let (mut jar, _) = ui_sign_in(&app, "admin", ADMIN_PASSWORD).await;

        // Bad filters are explained, not failed on.
        for (query, message) in [
            ("type=made.up", "Choose an event type from the list."),
            ("since=yesterday", "Enter a date and time"),
            ("since=2025-01-02T00:00&until=2025-01-01T00:00", "The end must come after the start."),
            ("user=nobody-here", "No account has this id, username or email."),
        ] {
            let r = get(&app, &mut jar, &format!("/ui/admin/audit?{query}"), "en").await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}");
            assert!(r.text.contains(message), "{query}");
            let r = get(&app, &mut jar, &format!("/ui/admin/audit.csv?{query}"), "en").await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}");
            assert!(r.headers["content-type"].to_str().unwrap().starts_with("text/html"));
        }

        // The page: 50 of them, by username, with the cursor to the next.
        let r = get(&app, &mut jar, &format!("/ui/admin/audit?user={}&type=sign_in.failed", user.username), "en").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.text.matches("sign_in.failed · #").count(), 50);
        let pager = &r.text[r.text.find("class=\"pager\"").expect("a pager")..];
        assert!(pager.contains("type=sign_in.failed&#38;before=") && pager.contains("rel=\"next\""), "a link to older events, filters kept: {pager}");

        // The export: all 230, newest first, no duplicates, formulas defused.
        let r = get(&app, &mut jar, &format!("/ui/admin/audit.csv?user={}&type=sign_in.failed", user.id), "en").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.headers["content-type"], "text/csv; charset=utf-8");
        let disposition = r.headers["content-disposition"].to_str().unwrap();
        assert!(disposition.starts_with("attachment; filename=\"porteiro-audit-") && disposition.ends_with(".csv\""), "{disposition}");
        let lines: Vec<&str> = r.text.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(lines[0], "id,occurred_at,event_type,outcome,user_id,actor_id,ip_address,user_agent,details");
        assert_eq!(lines.len(), 231, "a header and every event");
        let ids: Vec<i64> = lines[1..].iter().map(|l| l.split(',').next().unwrap().trim_matches('"').parse().unwrap()).collect();
        assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first, each once");
        for line in &lines[1..] {
            assert!(line.contains(&format!(",\"sign_in.failed\",\"failure\",\"{}\",", user.id)), "{line}");
            assert!(line.contains(",\"'@SUM(1+1)*cmd|' /C calc'!A0\","), "{line}");
        }
    }
}
