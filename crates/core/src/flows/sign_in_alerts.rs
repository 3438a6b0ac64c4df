//! New-device sign-in alerts, "this wasn't me" links and the sign-in history.
//!
//! Every successful sign-in (password, after a second step, compact API, hosted page) ends in
//! [`Auth::start_session`], which asks [`SignInAlerts::sighting`] which device this is. The
//! device is identified by a keyed hash (HMAC under a key derived from the master key): of the
//! device cookie the client presented, or — for a client without one — of its user agent and
//! network (IPv4 /24, IPv6 /64). The device cookie a sign-in issues is recorded too, so the
//! same browser is known the next time whether it presents the cookie or not. The store
//! records the device in the session's transaction, and, when the device is new to an account
//! that signed in before from elsewhere and wants alerts, stores a "this wasn't me" link for
//! that session and queues its mail in the same transaction. The very first device of an
//! account gets no alert.
//!
//! The link leads to a hosted page whose `GET` only shows a confirmation (mail scanners follow
//! links) and whose `POST` carries the token: the single-use token is the capability, so it
//! works without signing in. Confirming spends it, revokes only the session it names and sets
//! `password_reset_required`: from then on the account's password is refused exactly like a
//! wrong one (it also counts towards the lock, so the lock cannot tell a right password from a
//! wrong one) until a reset sets a new one.
//!
//! The history is read from the audit log (`sign_in.succeeded` and `sign_in.failed` of the
//! account), not a table of its own.

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use crate::crypto::{MasterKey, random_token, token_hash};
use crate::domain::User;
use crate::domain::audit::{Outcome, kind};
use crate::domain::device::{clamp_user_agent, describe};
use crate::domain::sign_in_alert::{
    ALERT_LINK_DAYS, DeviceSighting, Disowned, LoginAttempt, NewSignInAlert, SignInAlert,
};
use crate::error::Error;
use crate::flows::audit::{committed, new_event};
use crate::flows::login::looks_like_token;
use crate::geo::GeoIp;
use crate::mail::{Locale, Outbox, SignInFacts, render_new_device};
use crate::service::{Auth, ClientContext, Principal};
use crate::store::Store;

/// "This wasn't me" tokens are 32 random bytes, base64url: 43 characters.
pub const ALERT_TOKEN_LEN: usize = 43;
use crate::flows::login::DEVICE_TOKEN_LEN;
/// Whether `token` has the shape of a "this wasn't me" token (no look-up).
#[must_use]
pub fn alert_token_shaped(token: &str) -> bool {
    looks_like_token(token, ALERT_TOKEN_LEN)
}

/// The hosted page the link opens.
pub const DISOWN_PATH: &str = "/ui/not-me";
/// Most sign-ins one history page returns.
pub const MAX_HISTORY_PAGE: u32 = 100;

/// Builds the device sightings and alert mails of sign-ins.
pub struct SignInAlerts {
    store: Arc<dyn Store>,
    master: Arc<MasterKey>,
    outbox: Outbox,
    base_url: String,
    product: String,
    geo: Option<Arc<GeoIp>>,
}

impl std::fmt::Debug for SignInAlerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInAlerts")
            .field("geo", &self.geo.is_some())
            .finish_non_exhaustive()
    }
}

/// The network an address belongs to, as a device key sees it: IPv4 /24, IPv6 /64 (a client
/// keeps its key while its provider moves it within its network). Anything else as given.
#[must_use]
pub fn network_of(ip: &str) -> String {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        Ok(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Err(_) => ip.to_owned(),
    }
}

/// `now` as the alert mail says it, in UTC, written the recipient's way.
#[must_use]
pub fn format_when(now: DateTime<Utc>, locale: Locale) -> String {
    match locale {
        Locale::En => now.format("%B %-d, %Y, %H:%M UTC").to_string(),
        Locale::PtBr => now.format("%d/%m/%Y, %H:%M (UTC)").to_string(),
    }
}

impl SignInAlerts {
    /// The alerts of `auth`'s store and outbox, with links to `EMAIL_BASE_URL`.
    pub(crate) fn new(
        store: Arc<dyn Store>,
        master: Arc<MasterKey>,
        outbox: Outbox,
        config: &crate::config::AuthConfig,
    ) -> Self {
        Self {
            store,
            master,
            outbox,
            base_url: config.email_base_url.trim_end_matches('/').to_owned(),
            product: config.product_name.clone(),
            geo: None,
        }
    }

    fn key(&self, parts: &[&[u8]]) -> String {
        let mut all: Vec<&[u8]> = vec![b"sign-in-device"];
        all.extend_from_slice(parts);
        crate::crypto::hex(self.master.sign(&all).as_ref())
    }

    /// The device key a client presents now, and the keys of a device cookie issued with this
    /// sign-in (`issued`).
    fn device_keys(&self, ctx: &ClientContext, issued: Option<&str>) -> (String, Vec<String>) {
        let presented = ctx
            .device
            .as_deref()
            .filter(|d| looks_like_token(d, DEVICE_TOKEN_LEN));
        let key = match presented {
            Some(cookie) => self.key(&[b"cookie", cookie.as_bytes()]),
            None => {
                let ua = ctx.user_agent.as_deref().map(clamp_user_agent);
                let network = ctx.ip.as_deref().map(network_of).unwrap_or_default();
                self.key(&[
                    b"client",
                    ua.as_deref().unwrap_or("").as_bytes(),
                    network.as_bytes(),
                ])
            }
        };
        let also = issued
            .filter(|c| Some(*c) != presented)
            .map(|c| vec![self.key(&[b"cookie", c.as_bytes()])])
            .unwrap_or_default();
        (key, also)
    }

    /// What the session's transaction records about this sign-in's device: with an alert
    /// prepared (link, sealed mail, event) when the account wants alerts, signed in before and
    /// not from this device as far as a read tells now (the store checks again, in the
    /// transaction, before storing it).
    ///
    /// # Errors
    /// On store failure.
    pub(crate) async fn sighting(
        &self,
        user: &User,
        ctx: &ClientContext,
        issued: Option<&str>,
        session_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<DeviceSighting, Error> {
        let (device_key, also_keys) = self.device_keys(ctx, issued);
        let alert = if user.login_alerts {
            let state = self
                .store
                .sign_in_device_state(user.id, &device_key)
                .await?;
            if state.any && !state.known {
                Some(self.prepare(user, ctx, session_id, now)?)
            } else {
                None
            }
        } else {
            None
        };
        Ok(DeviceSighting {
            user_id: user.id,
            device_key,
            also_keys,
            now,
            alert,
        })
    }

    fn prepare(
        &self,
        user: &User,
        ctx: &ClientContext,
        session_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<NewSignInAlert, Error> {
        let locale = Locale::negotiate(&user.locale);
        let device = describe(ctx.user_agent.as_deref().map(clamp_user_agent).as_deref());
        let facts = SignInFacts {
            when: format_when(now, locale),
            place: self
                .geo
                .as_ref()
                .zip(ctx.ip.as_deref())
                .and_then(|(geo, ip)| geo.place(ip, locale)),
            browser: device.browser.clone(),
            os: device.os.clone(),
            ip: ctx.ip.clone(),
        };
        let token = random_token::<32>();
        let link = format!("{}{DISOWN_PATH}?token={token}", self.base_url);
        let message = render_new_device(&facts, &link, locale, &user.email, &self.product)?;
        let mail_id = Uuid::new_v4();
        Ok(NewSignInAlert {
            token_hash: token_hash(&token),
            expires_at: now + chrono::Duration::days(ALERT_LINK_DAYS),
            mail_id,
            mail: self.outbox.seal(mail_id, &message)?,
            event: new_event(
                now,
                kind::LOGIN_NEW_DEVICE,
                Outcome::Success,
                Some(user.id),
                None,
                json!({"session_id": session_id, "device": device.name}),
            ),
        })
    }
}

/// A page of the sign-in history.
#[derive(Debug, Clone)]
pub struct LoginHistoryPage {
    /// Newest first.
    pub items: Vec<LoginAttempt>,
    /// The cursor of the next page; `None` on the last one.
    pub next_before: Option<i64>,
}

impl Auth {
    /// Uses a local GeoIP database for the approximate place in alert mails.
    #[must_use]
    pub fn with_geoip(mut self, geo: GeoIp) -> Self {
        self.alerts.geo = Some(Arc::new(geo));
        self
    }

    /// The live "this wasn't me" link `token`, if it is one (shown by the confirmation page;
    /// changes nothing).
    ///
    /// # Errors
    /// On store failure.
    pub async fn sign_in_alert(&self, token: &str) -> Result<Option<SignInAlert>, Error> {
        let token = token.trim();
        if !looks_like_token(token, ALERT_TOKEN_LEN) {
            return Ok(None);
        }
        Ok(self
            .store
            .sign_in_alert(&token_hash(token), self.now())
            .await?)
    }

    /// "This wasn't me": spends the link, ends the session it names and the account's other
    /// sessions from the same device (later sign-ins there raised no alert of their own), undoes
    /// what could have been set up since that sign-in to keep the account (an authenticator app
    /// enabled, recovery addresses added, security answers set), and makes the password unusable
    /// until a reset, recording `session.disowned`. The account's other devices are untouched. `None` — and nothing
    /// changed — for a link that is malformed, unknown, used or expired.
    ///
    /// # Errors
    /// On store failure.
    pub async fn disown_sign_in(&self, token: &str) -> Result<Option<Disowned>, Error> {
        let token = token.trim();
        if !looks_like_token(token, ALERT_TOKEN_LEN) {
            return Ok(None);
        }
        let now = self.now();
        let hash = token_hash(token);
        // The event names the account and session, which only the link knows: read it first
        // (the store spends it only if it is still live, so a race changes nothing twice).
        let Some(alert) = self.store.sign_in_alert(&hash, now).await? else {
            return Ok(None);
        };
        let event = [self.event(
            kind::SESSION_DISOWNED,
            Outcome::Success,
            Some(alert.user_id),
            None,
            json!({"session_id": alert.session_id}),
        )];
        let Some(done) = self.store.disown_sign_in(&hash, now, &event).await? else {
            return Ok(None);
        };
        if !done.revoked.is_empty() {
            self.sessions_revoked(&done.revoked).await;
        }
        self.profile_changed(done.user_id).await;
        tracing::warn!(user_id = %done.user_id, session_id = %done.session_id, "sign-in disowned by the account holder: session ended, password reset required");
        committed(&event);
        Ok(Some(done))
    }

    /// The caller's own sign-ins, newest first: at most `limit` (1–[`MAX_HISTORY_PAGE`]) with
    /// ids below `before`.
    ///
    /// # Errors
    /// `Validation` (`invalid_pagination`) for a limit out of range or a negative cursor.
    pub async fn login_history(
        &self,
        principal: &Principal,
        before: Option<i64>,
        limit: u32,
    ) -> Result<LoginHistoryPage, Error> {
        if limit == 0 || limit > MAX_HISTORY_PAGE || before.is_some_and(|b| b <= 0) {
            let field = if limit == 0 || limit > MAX_HISTORY_PAGE {
                "limit"
            } else {
                "before"
            };
            return Err(Error::validation(
                field,
                "invalid_pagination",
                "limit is 1 to 100 and before a positive event id.",
            ));
        }
        let items = self
            .store
            .login_history(principal.user_id, before, limit)
            .await?;
        let next_before = (u32::try_from(items.len()).is_ok_and(|n| n >= limit))
            .then(|| items.last().map(|i| i.id))
            .flatten();
        Ok(LoginHistoryPage { items, next_before })
    }
}
