//! `/api/auth/devices`: each session as a device, owner-only, without token material.

use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{PASSWORD, spawn_app};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";

both_backends! {
    async fn devices_are_listed_renamed_and_revoked(backend: Backend) {
        let app = spawn_app(backend).await;
        let user = app.register("helena").await;
        let login = |ua: &'static str| {
            let req = app.client.post(format!("{}/auth", app.url)).header("User-Agent", ua).json(&json!({"login": "helena", "password": PASSWORD}));
            app.request(req)
        };
        let laptop = login(FIREFOX).await;
        let phone = login(IPHONE).await;
        let laptop_access = laptop.body["auth"].as_str().unwrap().to_owned();
        let phone_access = phone.body["auth"].as_str().unwrap().to_owned();
        let list = app.get_auth("/api/auth/devices", &laptop_access).await;
        assert_eq!(list.status, StatusCode::OK, "{}", list.text);
        let devices = list.data().as_array().unwrap().clone();
        assert_eq!(devices.len(), 2);
        let current: Vec<_> = devices.iter().filter(|d| d["is_current"] == true).collect();
        assert_eq!(current.len(), 1);
        assert_eq!(current[0]["device_name"], "Firefox on Linux");
        assert_eq!(current[0]["device_type"], "pc");
        assert_eq!(current[0]["browser"], "Firefox");
        assert_eq!(current[0]["ip_address"], "127.0.0.1");
        assert!(current[0]["created_at"].is_string() && current[0]["last_active_at"].is_string());
        let iphone = devices.iter().find(|d| d["is_current"] == false).unwrap();
        assert_eq!(iphone["device_type"], "smartphone");
        for field in ["refresh_token", "access_token", "token", "token_hash"] {
            assert!(!list.text.contains(field), "no token material ({field})");
        }
        assert!(!list.text.contains(laptop.body["refresh"].as_str().unwrap()));
        let phone_id = iphone["id"].as_str().unwrap();

        let one = app.get_auth(&format!("/api/auth/devices/{phone_id}"), &laptop_access).await;
        assert_eq!((one.status, one.data()["is_current"].clone()), (StatusCode::OK, json!(false)));
        let renamed = app.put_auth(&format!("/api/auth/devices/{phone_id}"), &laptop_access, json!({"device_name": "Helena's phone"})).await;
        assert_eq!(renamed.data()["device_name"], "Helena's phone");
        assert_eq!(app.put_auth(&format!("/api/auth/devices/{phone_id}"), &laptop_access, json!({"device_name": ""})).await.status, StatusCode::BAD_REQUEST);

        // Someone else cannot see, rename or revoke it.
        let other = app.register("igor").await;
        let o = app.sign_in(&other).await;
        assert_eq!(app.get_auth(&format!("/api/auth/devices/{phone_id}"), &o.access).await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.put_auth(&format!("/api/auth/devices/{phone_id}"), &o.access, json!({"device_name": "x"})).await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.delete_auth(&format!("/api/auth/devices/{phone_id}"), &o.access).await.status, StatusCode::NOT_FOUND);
        assert_eq!(app.me_status(&phone_access).await, StatusCode::OK);

        assert_eq!(app.delete_auth(&format!("/api/auth/devices/{phone_id}"), &laptop_access).await.status, StatusCode::OK);
        assert_eq!(app.me_status(&phone_access).await, StatusCode::UNAUTHORIZED, "revoked device's token dies at once");
        assert_eq!(app.post("/refresh", json!({"refresh": phone.body["refresh"]})).await.status, StatusCode::FORBIDDEN);
        assert_eq!(app.get_auth("/api/auth/devices", &laptop_access).await.data().as_array().unwrap().len(), 1);
        assert_eq!(app.get_auth("/api/auth/devices/not-a-uuid", &laptop_access).await.status, StatusCode::BAD_REQUEST);
        let _ = user;
    }
}
