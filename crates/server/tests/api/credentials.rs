//! Credential binding and its neighbours (pentest findings): sign-ins racing a password change,
//! concurrent changes, resets of disabled accounts, the absolute session lifetime, retired
//! signing keys, timing of accounts on older hash parameters, and introspection's rate class.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Options, TestApp, spawn_app, spawn_app_with};

/// Options for tests that hammer one account from one address: no rate limits, a lock that
/// needs many failures (the racing sign-ins fail whenever the change wins).
fn hammering() -> Options {
    Options {
        env: vec![
            ("RATE_LIMIT_ENABLED", "false".to_owned()),
            ("SECURITY_LOCKOUT_ATTEMPTS", "100".to_owned()),
        ],
    }
}

/// Whether a token pair from a sign-in still works in any way.
async fn usable(app: &TestApp, access: &str, refresh: &str) -> bool {
    app.me_status(access).await == StatusCode::OK
        || app
            .post("/refresh", json!({"refresh": refresh}))
            .await
            .status
            == StatusCode::OK
}

both_backends! {
    async fn sign_ins_racing_password_changes_leave_no_old_password_session(backend: Backend) {
        let app = Arc::new(spawn_app_with(backend, hammering()).await);
        let user = app.register("corrida").await;
        let passwords = ["Senha-Velha-1", "Senha-Nova-22"];
        let mut current = app.sign_in_as(&user.username, &user.password).await;
        let mut old = user.password.clone();
        let (mut raced, mut survivors) = (0, 0);
        for trial in 0..1_000 {
            let new = passwords[trial % 2].to_owned();
            let sign_ins: Vec<_> = (0..3)
                .map(|_| {
                    let (app, login, password) = (Arc::clone(&app), user.username.clone(), old.clone());
                    tokio::spawn(async move {
                        let r = app.post("/auth", json!({"login": login, "password": password})).await;
                        (r.status == StatusCode::OK).then(|| {
                            (r.body["auth"].as_str().unwrap().to_owned(), r.body["refresh"].as_str().unwrap().to_owned())
                        })
                    })
                })
                .collect();
            let change = {
                let (app, access, (from, to)) = (Arc::clone(&app), current.access.clone(), (old.clone(), new.clone()));
                tokio::spawn(async move {
                    app.post_auth("/change-password", &access, json!({"current_password": from, "new_password": to})).await
                })
            };
            let changed = change.await.unwrap();
            assert_eq!(changed.status, StatusCode::OK, "trial {trial}: {}", changed.text);
            for task in sign_ins {
                if let Some((access, refresh)) = task.await.unwrap() {
                    raced += 1;
                    if usable(&app, &access, &refresh).await {
                        survivors += 1;
                    }
                }
            }
            old = new;
            // The changing session survives its own change; keep using it.
            assert_eq!(app.me_status(&current.access).await, StatusCode::OK);
            if trial % 100 == 99 {
                current = app.sign_in_as(&user.username, &old).await;
            }
        }
        eprintln!("{raced} old-password sign-ins got a session before their change; {survivors} survived it");
        assert_eq!(survivors, 0);
    }

    async fn concurrent_password_changes_have_exactly_one_winner(backend: Backend) {
        let app = Arc::new(spawn_app_with(backend, hammering()).await);
        let user = app.register("dupla").await;
        for round in 0..10 {
            let t = app.sign_in_as(&user.username, &user.password).await;
            let tasks: Vec<_> = (0..4)
                .map(|i| {
                    let (app, access, current) = (Arc::clone(&app), t.access.clone(), user.password.clone());
                    tokio::spawn(async move {
                        app.post_auth("/change-password", &access, json!({"current_password": current, "new_password": format!("Outra-Senha-{i}x")})).await.status
                    })
                })
                .collect();
            let mut statuses = Vec::new();
            for task in tasks {
                statuses.push(task.await.unwrap());
            }
            let winners = statuses.iter().filter(|s| **s == StatusCode::OK).count();
            assert_eq!(winners, 1, "round {round}: {statuses:?}");
            assert!(statuses.iter().all(|s| *s == StatusCode::OK || *s == StatusCode::FORBIDDEN), "{statuses:?}");
            // Put the known password back for the next round (the winner's session survived).
            let mut winner = None;
            for i in 0..4 {
                if app.sign_in_as_status(&user.username, &format!("Outra-Senha-{i}x")).await == StatusCode::OK {
                    winner = Some(i);
                }
            }
            let winner = winner.expect("one new password works");
            let back = app.post_auth("/change-password", &t.access, json!({"current_password": format!("Outra-Senha-{winner}x"), "new_password": user.password})).await;
            assert_eq!(back.status, StatusCode::OK, "{}", back.text);
        }
    }

    async fn a_disabled_account_cannot_complete_an_earlier_reset(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("desligada").await;
        assert_eq!(app.post("/forgot-password", json!({"email": user.email})).await.status, StatusCode::OK);
        let link = app.smtp.wait_for(&user.email, 1).await[0].link();
        let token = link.split("token=").nth(1).unwrap().to_owned();
        let admin = app.admin().await;
        let r = app.put_auth(&format!("/api/users/{}", user.id), &admin.access, json!({"is_active": false})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let reset = app.post("/reset-password", json!({"email": user.email, "token": token, "password": "Nova-S3nha-Boa"})).await;
        assert_eq!(reset.status, StatusCode::FORBIDDEN, "{}", reset.text);
        let api = app.post("/api/auth/reset-password", json!({"token": token, "password": "Nova-S3nha-Boa"})).await;
        assert_eq!(api.body["code"], "invalid_reset_token", "{}", api.text);
        // Nothing changed: once re-enabled, the old password still works — and the link asked
        // for before the disable stays dead.
        app.put_auth(&format!("/api/users/{}", user.id), &admin.access, json!({"is_active": true})).await;
        assert_eq!(app.sign_in_as_status(&user.username, &user.password).await, StatusCode::OK);
        let late = app.post("/reset-password", json!({"email": user.email, "token": token, "password": "Nova-S3nha-Boa"})).await;
        assert_eq!(late.status, StatusCode::FORBIDDEN, "{}", late.text);
    }

    async fn refreshing_never_extends_a_session_past_its_maximum_lifetime(backend: Backend) {
        let app = spawn_app_with(backend, Options { env: vec![
            ("JWT_REFRESH_EXPIRATION", "25m".to_owned()),
            ("SESSION_MAX_LIFETIME", "30m".to_owned()),
        ] }).await;
        let user = app.register("limite").await;
        let mut t = app.sign_in(&user).await;
        for minutes in [10, 10, 9] {
            app.clock.advance(chrono::Duration::minutes(minutes));
            let r = app.post("/refresh", json!({"refresh": t.refresh})).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            t.refresh = r.body["refresh"].as_str().unwrap().to_owned();
        }
        // 29 minutes in, every refresh so far slid the expiry 25 minutes ahead; the cap is 30.
        app.clock.advance(chrono::Duration::minutes(2));
        assert_eq!(app.post("/refresh", json!({"refresh": t.refresh})).await.status, StatusCode::FORBIDDEN);
        let devices = app.get_auth("/api/auth/devices", &app.sign_in(&user).await.access).await;
        assert_eq!(devices.data().as_array().unwrap().len(), 1, "only the new sign-in is alive");
    }

    async fn superseded_keys_stop_verifying_and_leave_the_jwks(backend: Backend) {
        use base64::Engine as _;
        let app = spawn_app(backend).await;
        let user = app.register("chaves").await;
        let real = app.sign_in(&user).await;
        // The key that signed it leaks.
        let old = app.auth.store().signing_keys().await.unwrap().remove(0);
        let leaked = app.auth.envelope().open_deployment_column(porteiro_core::store::SealedColumn::SigningKey, &old.kid, &old.private_key_enc).unwrap().to_vec();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut claims: serde_json::Value = serde_json::from_slice(&b64.decode(real.access.split('.').nth(1).unwrap()).unwrap()).unwrap();
        let forge = |claims: &serde_json::Value| {
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
            header.kid = Some(old.kid.clone());
            jsonwebtoken::encode(&header, claims, &jsonwebtoken::EncodingKey::from_ed_der(&leaked)).unwrap()
        };
        // The operator rotates. Right after, the old key still verifies what it signed.
        porteiro_core::keys::generate_key(app.auth.store().as_ref(), app.auth.envelope(), app.auth.now(), "test").await.unwrap();
        app.auth.reload_keys().await;
        assert_eq!(app.me_status(&real.access).await, StatusCode::OK);
        let kids = |jwks: serde_json::Value| jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
        assert!(kids(app.get("/.well-known/jwks.json").await.body).contains(&old.kid));
        let now = app.auth.now().timestamp();
        claims["iat"] = json!(now);
        claims["nbf"] = json!(now);
        claims["exp"] = json!(now + 3600);
        let forged = forge(&claims);
        assert_eq!(app.me_status(&forged).await, StatusCode::OK, "within the grace, as any token it signed");
        // An access-token lifetime plus the grace later nothing the old key signed honestly can
        // be alive: it stops verifying (forgeries with a long expiry included, cached or not) and
        // leaves the JWKS, before maintenance has even run.
        app.clock.advance(chrono::Duration::minutes(7) + chrono::Duration::seconds(1));
        assert_eq!(app.me_status(&forged).await, StatusCode::UNAUTHORIZED);
        let now = app.auth.now().timestamp();
        claims["iat"] = json!(now);
        claims["nbf"] = json!(now);
        claims["exp"] = json!(now + 60);
        assert_eq!(app.me_status(&forge(&claims)).await, StatusCode::UNAUTHORIZED);
        assert!(!kids(app.get("/.well-known/jwks.json").await.body).contains(&old.kid));
        // Retiring the key that superseded it (after another rotation) gives it no second life.
        let successor = app.auth.store().signing_keys().await.unwrap().remove(0).kid;
        porteiro_core::keys::generate_key(app.auth.store().as_ref(), app.auth.envelope(), app.auth.now(), "test").await.unwrap();
        porteiro_core::keys::retire_key(app.auth.store().as_ref(), &successor, app.auth.now(), "test").await.unwrap();
        app.auth.reload_keys().await;
        assert_eq!(app.me_status(&forged).await, StatusCode::UNAUTHORIZED);
        assert!(!kids(app.get("/.well-known/jwks.json").await.body).contains(&old.kid));
        let fresh = app.sign_in(&user).await;
        assert_eq!(app.me_status(&fresh.access).await, StatusCode::OK);
        // Maintenance marks it retired and erases its private half.
        assert_eq!(app.auth.retire_superseded_keys().await.unwrap(), vec![old.kid.clone()]);
        let stored = app.auth.store().signing_keys().await.unwrap();
        let retired = stored.iter().find(|k| k.kid == old.kid).unwrap();
        assert!(retired.retired_at.is_some() && retired.private_key_enc.is_empty());
        assert_eq!(app.me_status(&fresh.access).await, StatusCode::OK);
    }

    async fn introspection_has_its_own_generous_limit_but_guessing_is_slow(backend: Backend) {
        let app = spawn_app_with(backend, Options { env: vec![
            ("RATE_LIMIT_CAPACITY", "100".to_owned()),
            ("RATE_LIMIT_REFILL_RATE", "10".to_owned()),
            // A burst of ten sign-in tokens that does not refill while the test runs.
            ("RATE_LIMIT_STRICT_CAPACITY", "10".to_owned()),
            ("RATE_LIMIT_STRICT_REFILL_RATE", "0.001".to_owned()),
            ("INTROSPECTION_CLIENT_ID", "gateway".to_owned()),
            ("INTROSPECTION_CLIENT_SECRET", "gateway-secret-123".to_owned()),
        ] }).await;
        let user = app.register("recurso").await;
        let t = app.sign_in(&user).await;
        let introspect = |secret: &'static str| {
            let req = app.client.post(format!("{}/api/auth/introspect", app.url)).basic_auth("gateway", Some(secret)).form(&[("token", t.access.clone())]);
            app.request(req)
        };
        // A resource server introspecting on every request it serves: far more than the strict
        // burst (10) and than the general one (100).
        for i in 0..150 {
            let r = introspect("gateway-secret-123").await;
            assert_eq!(r.status, StatusCode::OK, "call {i}: {}", r.text);
            assert_eq!(r.body["active"], true);
        }
        // Guessing the client secret costs sign-in tokens: after the strict burst, refused before
        // the secret is even checked — the right one included, so the limit is no oracle.
        let mut refused_at = None;
        for i in 0..20 {
            let r = introspect("guess").await;
            if r.status == StatusCode::TOO_MANY_REQUESTS {
                refused_at = Some(i);
                break;
            }
            assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        }
        // Ten sign-in tokens in the burst; the sign-in above spent one.
        assert_eq!(refused_at, Some(9));
        let right = introspect("gateway-secret-123").await;
        assert_eq!(right.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(right.headers.get("retry-after").is_some());
    }

    async fn stale_hash_accounts_cost_the_same_as_unknown_identifiers(backend: Backend) {
        let app = spawn_app_with(backend, hammering()).await;
        let user = app.register("antiga").await;
        // The account still carries a hash from an older configuration: bcrypt, cost 10.
        let legacy = porteiro_core::credentials::PasswordHasher::new(porteiro_core::credentials::HashScheme::Bcrypt { cost: 10 }, 1, 1).unwrap();
        let legacy_hash = legacy.hash(&secrecy::SecretString::from(user.password.clone())).await.unwrap();
        let id = uuid::Uuid::parse_str(&user.id).unwrap();
        let current = app.auth.store().user_by_id(id).await.unwrap().unwrap().password_hash;
        assert!(app.auth.store().upgrade_password_hash(id, &current, &legacy_hash).await.unwrap());
        let status = app.auth.calibrate_password_hashing().await.unwrap();
        assert_eq!(status.stale, 1);
        assert!(!app.auth.hasher().floor().is_zero());
        let (s, u) = app.median_failed_sign_in_secs("antiga", "ninguem", 25).await;
        let ratio = u / s;
        eprintln!("sign-in timing: unknown {u:.4}s vs bcrypt-10 account {s:.4}s (ratio {ratio:.2})");
        assert!((0.8..=1.25).contains(&ratio), "unknown {u:.4}s vs stale account {s:.4}s (ratio {ratio:.2})");
        // Once the account is re-hashed (its next successful sign-in), the padding goes away.
        assert_eq!(app.sign_in_as_status("antiga", &user.password).await, StatusCode::OK);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = app.auth.calibrate_password_hashing().await.unwrap();
            if status.stale == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "the upgrade did not land");
            tokio::task::yield_now().await;
        }
        assert!(app.auth.hasher().floor().is_zero());
    }

    async fn emails_stored_before_the_canonical_form_are_rewritten_to_it(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("legado").await;
        let id = uuid::Uuid::parse_str(&user.id).unwrap();
        // As an older version stored it: the domain in Unicode.
        let legacy = "legado@ex\u{e4}mple.test";
        assert!(app.auth.store().rewrite_email(id, &user.email, legacy, app.auth.now(), &[]).await.unwrap());
        assert_eq!(app.sign_in_as_status(legacy, &user.password).await, StatusCode::FORBIDDEN, "unreachable by email until rewritten");
        assert_eq!(app.auth.canonicalize_stored_emails().await.unwrap(), (1, 0));
        for spelling in [legacy, "legado@xn--exmple-cua.test", "Legado@EX\u{c4}MPLE.test"] {
            assert_eq!(app.sign_in_as_status(spelling, &user.password).await, StatusCode::OK, "{spelling}");
        }
        assert_eq!(app.auth.canonicalize_stored_emails().await.unwrap(), (0, 0));
    }
}
