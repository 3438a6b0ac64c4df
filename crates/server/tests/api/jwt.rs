//! JWT attacks (each must get 401) and key rotation.
//!
//! Some forgeries are signed with *our own* private key (read back from the store with the master
//! key) so the test proves the header and claim checks themselves, not just the signature.

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use porteiro_core::store::StoreEvent;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{TestApp, spawn_app};

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

fn parts(token: &str) -> (Value, Value) {
    let mut it = token.split('.');
    let h = URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap();
    let c = URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap();
    (
        serde_json::from_slice(&h).unwrap(),
        serde_json::from_slice(&c).unwrap(),
    )
}

/// Our newest private key, as PKCS#8, and its kid.
async fn our_key(app: &TestApp) -> (Vec<u8>, String) {
    let newest = app.auth.store().signing_keys().await.unwrap().remove(0);
    (
        app.auth
            .envelope()
            .open_deployment_column(
                porteiro_core::store::SealedColumn::SigningKey,
                &newest.kid,
                &newest.private_key_enc,
            )
            .unwrap()
            .to_vec(),
        newest.kid,
    )
}

fn foreign_key() -> (Vec<u8>, String) {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let x = URL_SAFE_NO_PAD.encode(
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .unwrap()
            .public_key()
            .as_ref(),
    );
    (pkcs8.as_ref().to_vec(), x)
}

fn sign(header: &Header, claims: &Value, pkcs8: &[u8]) -> String {
    jsonwebtoken::encode(header, claims, &EncodingKey::from_ed_der(pkcs8)).unwrap()
}

both_backends! {
    async fn forged_and_confused_tokens_are_refused(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("bruno").await;
        let t = app.sign_in(&user).await;
        let (header, claims) = parts(&t.access);
        assert_eq!(header["alg"], "EdDSA");
        assert!(header["kid"].is_string());
        for claim in ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "sid", "typ"] {
            assert!(!claims[claim].is_null(), "claim {claim} missing");
        }
        assert_eq!(claims["typ"], "access");
        assert_eq!(claims["iss"], "http://porteiro.test");
        assert_eq!(claims["sub"], user.id.as_str());
        let sig = t.access.rsplit('.').next().unwrap();
        let jwks = app.get("/.well-known/jwks.json").await.body;
        let x = jwks["keys"][0]["x"].as_str().unwrap().to_owned();

        let mut forged: Vec<(&str, String)> = Vec::new();
        // alg: none, in a few spellings, with and without a signature.
        for alg in ["none", "None", "NONE"] {
            forged.push(("alg none", format!("{}.{}.", b64(&json!({"alg": alg, "typ": "JWT"})), b64(&claims))));
            forged.push(("alg none + sig", format!("{}.{}.{sig}", b64(&json!({"alg": alg, "kid": header["kid"]})), b64(&claims))));
        }
        // HMAC with the public key as the secret (algorithm confusion).
        for secret in [x.as_bytes().to_vec(), URL_SAFE_NO_PAD.decode(&x).unwrap()] {
            let mut h = Header::new(Algorithm::HS256);
            h.kid = header["kid"].as_str().map(ToOwned::to_owned);
            forged.push(("HS256 confusion", jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(&secret)).unwrap()));
        }
        // A foreign key: unknown kid, our kid, and our kid with the foreign key embedded or linked.
        let (foreign, foreign_x) = foreign_key();
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some("attacker-key".to_owned());
        forged.push(("unknown kid", sign(&h, &claims, &foreign)));
        h.kid = header["kid"].as_str().map(ToOwned::to_owned);
        forged.push(("our kid, foreign key", sign(&h, &claims, &foreign)));
        let mut embedded = h.clone();
        embedded.jwk = Some(serde_json::from_value(json!({"kty": "OKP", "crv": "Ed25519", "x": foreign_x})).unwrap());
        forged.push(("embedded jwk", sign(&embedded, &claims, &foreign)));
        // Tampered claims keep the old signature.
        let mut other = claims.clone();
        other["sub"] = json!(uuid::Uuid::new_v4().to_string());
        forged.push(("tampered sub", format!("{}.{}.{sig}", t.access.split('.').next().unwrap(), b64(&other))));

        // Signed with OUR key: the checks beyond the signature must hold.
        let (ours, kid) = our_key(&app).await;
        let mut ok_header = Header::new(Algorithm::EdDSA);
        ok_header.kid = Some(kid.clone());
        assert_eq!(app.me_status(&sign(&ok_header, &claims, &ours)).await, StatusCode::OK, "control: a faithful re-signing is accepted");
        for (name, field, value) in [
            ("jku header", "jku", "https://evil.example/jwks.json"),
            ("x5u header", "x5u", "https://evil.example/cert.pem"),
        ] {
            let mut h = ok_header.clone();
            match field {
                "jku" => h.jku = Some(value.to_owned()),
                _ => h.x5u = Some(value.to_owned()),
            }
            forged.push((name, sign(&h, &claims, &ours)));
        }
        let mut with_jwk = ok_header.clone();
        with_jwk.jwk = Some(serde_json::from_value(json!({"kty": "OKP", "crv": "Ed25519", "x": x})).unwrap());
        forged.push(("jwk header", sign(&with_jwk, &claims, &ours)));
        for (name, key, value) in [
            ("wrong typ", "typ", json!("refresh")),
            ("wrong aud", "aud", json!("someone-else")),
            ("wrong iss", "iss", json!("https://evil.example")),
            ("expired", "exp", json!(claims["iat"].as_i64().unwrap() - 10)),
            ("not yet valid", "nbf", json!(claims["iat"].as_i64().unwrap() + 600)),
            ("foreign session", "sid", json!(uuid::Uuid::new_v4().to_string())),
        ] {
            let mut c = claims.clone();
            c[key] = value;
            forged.push((name, sign(&ok_header, &c, &ours)));
        }
        let mut no_exp = claims.clone();
        no_exp.as_object_mut().unwrap().remove("exp");
        forged.push(("missing exp", sign(&ok_header, &no_exp, &ours)));

        // The refresh token is not an access token.
        forged.push(("refresh as access", t.refresh.clone()));
        for (name, token) in &forged {
            let r = app.get_auth("/api/auth/me", token).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{name} was accepted");
            assert_eq!(r.body["code"], "invalid_token", "{name}");
            assert!(r.headers["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
        }
        // And the access token is not a refresh token.
        assert_eq!(app.post("/api/auth/refresh", json!({"refresh_token": t.access})).await.status, StatusCode::UNAUTHORIZED);
        // Tokens in the query string are ignored.
        assert_eq!(app.get(&format!("/api/auth/me?access_token={}", t.access)).await.status, StatusCode::UNAUTHORIZED);
    }

    async fn rotated_keys_keep_old_tokens_valid(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("celia").await;
        let before = app.sign_in(&user).await;
        let new_kid = porteiro_core::keys::generate_key(app.auth.store().as_ref(), app.auth.envelope(), chrono::Utc::now(), "test").await.unwrap();
        app.auth.apply_event(StoreEvent::KeysChanged).await;
        let after = app.sign_in(&user).await;
        assert_eq!(parts(&after.access).0["kid"], new_kid.as_str());
        assert_ne!(parts(&before.access).0["kid"], new_kid.as_str());
        assert_eq!(app.me_status(&before.access).await, StatusCode::OK, "old key still verifies");
        assert_eq!(app.me_status(&after.access).await, StatusCode::OK);
        let jwks = app.get("/.well-known/jwks.json").await.body;
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
        assert_eq!(jwks["keys"][0]["kid"], new_kid.as_str());
        for key in jwks["keys"].as_array().unwrap() {
            assert_eq!((key["kty"].as_str(), key["crv"].as_str(), key["alg"].as_str()), (Some("OKP"), Some("Ed25519"), Some("EdDSA")));
            assert!(key.get("d").is_none(), "no private part");
        }
    }
}
