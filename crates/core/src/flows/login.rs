//! Sign-in, refresh-token rotation and access-token authentication.
//!
//! Sign-in always runs one password verification, against the account's hash or a dummy one, so
//! unknown identifiers, locked accounts and wrong passwords take the same time and give the same
//! [`Error::InvalidCredentials`]. A locked account is refused even with the right password and
//! failures during a lock do not extend it.

use std::sync::Arc;

use secrecy::SecretString;
use serde_json::json;
use uuid::Uuid;

use crate::crypto::{random_token, token_hash};
use crate::domain::audit::{Outcome, kind};
use crate::domain::device::{clamp_user_agent, describe};
use crate::domain::session::{NewRefreshToken, RotateOutcome, Rotation};
use crate::domain::{NewSession, User};
use crate::error::Error;
use crate::flows::audit::committed;
use crate::flows::mfa::SignIn;
use crate::keys::AccessClaims;
use crate::service::{Auth, Authenticated, ClientContext, Principal};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Refresh tokens are 32 random bytes, base64url: 43 characters.
const REFRESH_TOKEN_LEN: usize = 43;
/// Device cookies are the same size.
pub(crate) const DEVICE_TOKEN_LEN: usize = 43;

pub(crate) fn looks_like_token(token: &str, len: usize) -> bool {
    token.len() == len
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Auth {
    /// Signs in with a username or email and a password: opens a session, or — for an account
    /// that needs a second step — stores the second step and answers with its `mfa_token`
    /// (see [`crate::flows::mfa`]). The second step appears only after a correct password.
    ///
    /// # Errors
    /// `InvalidCredentials` (unknown, wrong, locked), `AccountDisabled` (right password, disabled
    /// account), `Validation` (empty identifier), `Overloaded`.
    pub async fn login(
        &self,
        identifier: &str,
        password: &SecretString,
        ctx: &ClientContext,
    ) -> Result<SignIn, Error> {
        self.login_for(identifier, password, ctx, true).await
    }

    /// [`Auth::login`] for a client that can (`email_step`) or cannot (the compact API) finish
    /// a second step by emailed code. For the latter, a sign-in that would need one answers
    /// `MfaRequired` without mailing a code it could never use.
    pub(crate) async fn login_for(
        &self,
        identifier: &str,
        password: &SecretString,
        ctx: &ClientContext,
        email_step: bool,
    ) -> Result<SignIn, Error> {
        let login = crate::domain::login_key(identifier);
        if login.is_empty() || login.len() > 254 {
            return Err(Error::validation(
                "login",
                "invalid_login",
                "Enter your username or email.",
            ));
        }
        // No account name contains a control character, and PostgreSQL refuses NUL in text:
        // such an identifier is simply unknown (and still pays for the dummy hash below).
        let user = if login.chars().any(char::is_control) {
            None
        } else {
            self.store.user_by_login(&login).await?
        };
        let verification = self
            .hasher
            .verify(password, user.as_ref().map(|u| u.password_hash.as_str()))
            .await?;
        let now = self.now();
        // Every failure costs exactly one write, whether the account exists, is locked or the
        // password is wrong, so neither timing nor the lock tells them apart. Failures during a
        // lock are written but neither counted nor extend it.
        let (attempts, lock_until) = (
            self.config.lockout_attempts,
            now + self.config.lockout_duration,
        );
        // A known device: this browser signed in to this account before, from this address. It
        // is looked up whenever a device cookie comes, account or not, so the cost is the same.
        let device_hash = ctx
            .device
            .as_deref()
            .filter(|d| ctx.ip.is_some() && looks_like_token(d, DEVICE_TOKEN_LEN))
            .map(token_hash);
        let known = match &device_hash {
            Some(hash) => self
                .store
                .known_device(user.as_ref().map_or(Uuid::nil(), |u| u.id), hash)
                .await?
                .filter(|d| ctx.ip.as_deref() == Some(d.ip_address.as_str())),
            None => None,
        };
        let Some(user) = user else {
            let key = crate::crypto::token_hash(&login);
            let failed = [self.sign_in_failed_event(None, "unknown_account")];
            self.store
                .record_failed_login_unknown(&key, now, attempts, lock_until, &failed)
                .await?;
            committed(&failed);
            return Err(Error::InvalidCredentials);
        };
        if let (Some(device), Some(hash)) = (&known, &device_hash) {
            // Failures from a known device count on the device, and only the device's own lock
            // applies: failures from elsewhere cannot lock its owner out.
            let device_locked = device.locked_until.is_some_and(|t| t > now);
            if device_locked || !verification.matches || user.password_reset_required {
                let reason = if device_locked {
                    "device_locked"
                } else if verification.matches {
                    "password_reset_required"
                } else {
                    "wrong_password"
                };
                let failed = self.sign_in_failed_event(Some(user.id), reason);
                let locked = self.lock_event(user.id, "device", attempts, lock_until);
                let locked_now = self
                    .store
                    .record_device_failure(
                        user.id, hash, now, attempts, lock_until, &failed, &locked,
                    )
                    .await?;
                committed(&[failed]);
                if locked_now {
                    committed(&[locked]);
                }
                return Err(Error::InvalidCredentials);
            }
            if !user.is_active {
                self.sign_in_failed(Some(user.id), "disabled").await;
                return Err(Error::AccountDisabled);
            }
            self.ensure_email_confirmed(&user).await?;
            return self
                .after_password(
                    user,
                    verification.needs_rehash,
                    password,
                    ctx,
                    true,
                    email_step,
                )
                .await;
        }
        // After a "this wasn't me", the password is refused until a reset, exactly like a
        // wrong one: same answer, and it counts towards the lock like a wrong one, so neither
        // the answer nor the lock tells whether the password was right.
        if user.is_locked(now) || !verification.matches || user.password_reset_required {
            let reason = if user.is_locked(now) {
                "locked"
            } else if verification.matches {
                "password_reset_required"
            } else {
                "wrong_password"
            };
            let failed = self.sign_in_failed_event(Some(user.id), reason);
            let locked = self.lock_event(user.id, "account", attempts, lock_until);
            let locked_now = self
                .store
                .record_failed_login(user.id, now, attempts, lock_until, &failed, &locked)
                .await?;
            committed(&[failed]);
            if locked_now {
                self.profile_changed(user.id).await;
                tracing::warn!(user_id = %user.id, "account locked after repeated failed sign-ins");
                committed(&[locked]);
            }
            return Err(Error::InvalidCredentials);
        }
        if !user.is_active {
            self.sign_in_failed(Some(user.id), "disabled").await;
            return Err(Error::AccountDisabled);
        }
        self.ensure_email_confirmed(&user).await?;
        self.after_password(
            user,
            verification.needs_rehash,
            password,
            ctx,
            false,
            email_step,
        )
        .await
    }

    /// A correct password for an active account (`known`: from a known device, whose own lock
    /// applies instead of the account's): upgrade the hash if due, then either store the second step the account needs or
    /// end the sign-in. The account's failure count is reset only when the whole sign-in
    /// succeeds, so someone holding the password cannot wipe the count of wrong second-step
    /// codes by signing in again.
    async fn after_password(
        &self,
        user: User,
        needs_rehash: bool,
        password: &SecretString,
        ctx: &ClientContext,
        known: bool,
        email_step: bool,
    ) -> Result<SignIn, Error> {
        if needs_rehash {
            self.upgrade_hash_in_background(&user, password.clone());
        }
        let device_hash = ctx
            .device
            .as_deref()
            .filter(|d| ctx.ip.is_some() && looks_like_token(d, DEVICE_TOKEN_LEN))
            .map(token_hash);
        if let Some((methods, email_first)) = self.second_step_methods(&user, known).await? {
            if email_first && !email_step {
                return Err(Error::MfaRequired);
            }
            let step = self
                .begin_second_step(&user, methods, email_first, ctx, device_hash, known)
                .await?;
            return Ok(SignIn::SecondStep(step));
        }
        if !known
            && !self
                .store
                .record_successful_login(user.id, self.now())
                .await?
        {
            // Locked by failures that landed while this password was being verified.
            self.sign_in_failed(Some(user.id), "locked").await;
            return Err(Error::InvalidCredentials);
        }
        let details = json!({"method": "password", "known_device": known});
        let out = self
            .open_signed_in_session(user, ctx, known, vec!["pwd".to_owned()], details)
            .await?;
        Ok(SignIn::Done(Box::new(out)))
    }

    /// The end of a successful sign-in (after the password, or after the second step):
    /// remember the device, open the session with `amr`, write `sign_in.succeeded` with
    /// `details`.
    pub(crate) async fn open_signed_in_session(
        &self,
        user: User,
        ctx: &ClientContext,
        known_device: bool,
        amr: Vec<String>,
        details: serde_json::Value,
    ) -> Result<Authenticated, Error> {
        let now = self.now();
        let (device_cookie, device_token) = match (&ctx.device, known_device) {
            (Some(existing), true) => (Some(existing.clone()), None),
            _ => {
                let fresh = random_token::<32>();
                (Some(fresh.clone()), Some(fresh))
            }
        };
        if let (Some(ip), Some(cookie)) = (&ctx.ip, &device_cookie) {
            let remembered = self
                .store
                .remember_device(user.id, &token_hash(cookie), ip, now)
                .await?;
            if !remembered {
                // The device was locked by failures that landed while this password was checked.
                self.sign_in_failed(Some(user.id), "device_locked").await;
                return Err(Error::InvalidCredentials);
            }
        }
        let user_id = user.id;
        let issued = device_token.as_deref().filter(|_| ctx.ip.is_some());
        let mut out = match self
            .start_session_from(user, ctx, amr, details, issued)
            .await
        {
            Err(Error::CredentialChanged) => {
                self.sign_in_failed(Some(user_id), "credential_changed")
                    .await;
                return Err(Error::InvalidCredentials);
            }
            other => other?,
        };
        out.device_token = if ctx.ip.is_some() { device_token } else { None };
        tracing::info!(user_id = %out.user.id, session_id = %out.session_id, "signed in");
        Ok(out)
    }

    /// See [`crate::flows::audit::lock_event`].
    pub(crate) fn lock_event(
        &self,
        user_id: Uuid,
        scope: &'static str,
        attempts: i32,
        lock_until: chrono::DateTime<chrono::Utc>,
    ) -> crate::domain::NewAuditEvent {
        crate::flows::audit::lock_event(self.now(), user_id, scope, attempts, lock_until)
    }

    fn sign_in_failed_event(
        &self,
        user_id: Option<Uuid>,
        reason: &'static str,
    ) -> crate::domain::NewAuditEvent {
        self.event(
            kind::SIGN_IN_FAILED,
            Outcome::Failure,
            user_id,
            None,
            json!({"reason": reason}),
        )
    }

    /// A refused sign-in that changed nothing.
    async fn sign_in_failed(&self, user_id: Option<Uuid>, reason: &'static str) {
        self.append_alone(self.sign_in_failed_event(user_id, reason))
            .await;
    }

    fn upgrade_hash_in_background(&self, user: &User, password: SecretString) {
        let hasher = self.hasher.clone();
        let store = self.store.clone();
        let (id, old) = (user.id, user.password_hash.clone());
        tokio::spawn(async move {
            match hasher.hash(&password).await {
                Ok(new) => match store.upgrade_password_hash(id, &old, &new).await {
                    Ok(true) => tracing::info!(user_id = %id, "password hash upgraded"),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(user_id = %id, error = %e, "password hash upgrade failed")
                    }
                },
                Err(e) => {
                    tracing::debug!(user_id = %id, error = %e, "password hash upgrade skipped")
                }
            }
        });
    }

    /// Creates a session (device) for `user` and issues its first token pair. `user` must be the
    /// account as read before its credential was verified: the session is only created if its
    /// credential epoch is still current (see [`crate::store::SessionStore::create_session`]).
    /// The `sign_in.succeeded` event, with `details` (the method, at least) and the session id,
    /// is written with the session.
    ///
    /// # Errors
    /// `CredentialChanged` when the epoch moved or the account was disabled meanwhile; store
    /// failures.
    pub async fn start_session(
        &self,
        user: User,
        ctx: &ClientContext,
        amr: Vec<String>,
        details: serde_json::Value,
    ) -> Result<Authenticated, Error> {
        self.start_session_from(user, ctx, amr, details, None).await
    }

    /// [`Auth::start_session`], recording the device in the session's transaction and alerting
    /// the owner when it is new (see [`crate::flows::sign_in_alerts`]); `issued` is the device
    /// cookie this sign-in gives the client, if any.
    pub(crate) async fn start_session_from(
        &self,
        user: User,
        ctx: &ClientContext,
        amr: Vec<String>,
        mut details: serde_json::Value,
        issued: Option<&str>,
    ) -> Result<Authenticated, Error> {
        let now = self.now();
        let user_agent = ctx.user_agent.as_deref().map(clamp_user_agent);
        let device = describe(user_agent.as_deref());
        let session_id = Uuid::new_v4();
        let expires_at = now + self.config.initial_session_lifetime();
        let refresh_token = random_token::<32>();
        let session = NewSession {
            id: session_id,
            user_id: user.id,
            now,
            expires_at,
            ip_address: ctx.ip.clone(),
            user_agent,
            device_name: device.name,
            device_type: device.device_type,
            os: device.os,
            browser: device.browser,
            credential_epoch: user.credential_epoch,
            amr,
        };
        let refresh = NewRefreshToken {
            token_hash: token_hash(&refresh_token),
            session_id,
            expires_at,
            now,
        };
        if let Some(object) = details.as_object_mut() {
            object.insert("session_id".to_owned(), json!(session_id));
        }
        let succeeded = [self.event(
            kind::SIGN_IN_SUCCEEDED,
            Outcome::Success,
            Some(user.id),
            None,
            details,
        )];
        let sighting = self
            .alerts
            .sighting(&user, ctx, issued, session_id, now)
            .await?;
        let Some((_, alerted)) = self
            .store
            .create_session_noting_device(&session, &refresh, &sighting, &succeeded)
            .await?
        else {
            // The password (or other credential) verified for this sign-in is no longer current:
            // a change, reset, disable or "revoke all" committed meanwhile (or the owner said
            // "this wasn't me" and a reset is due).
            return Err(Error::CredentialChanged);
        };
        committed(&succeeded);
        if let (true, Some(alert)) = (alerted, &sighting.alert) {
            committed(std::slice::from_ref(&alert.event));
            self.outbox.wake();
        }
        let access_token = self.keys.issue(
            user.id,
            session_id,
            &session.amr,
            &user.roles,
            now,
            self.config.access_ttl,
        )?;
        Ok(Authenticated {
            access_token,
            refresh_token,
            expires_in: self.config.access_ttl.num_seconds(),
            session_id,
            user,
            device_token: None,
        })
    }

    /// Exchanges a refresh token for a new pair. The presented token is spent; presenting a spent
    /// token again revokes its whole session (family) and every access token of it — except
    /// within the grace window (`refresh_reuse_interval`) while its successor is still unspent:
    /// then the answer carries that same successor and a fresh access token, so two requests of
    /// one client racing on one token both succeed and leave one family.
    ///
    /// # Errors
    /// `InvalidRefreshToken`.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        ctx: &ClientContext,
    ) -> Result<Authenticated, Error> {
        self.rotate(refresh_token, None, ctx).await
    }

    /// Like [`Auth::refresh`], but the refresh token must belong to `principal`'s session.
    ///
    /// # Errors
    /// `InvalidRefreshToken`.
    pub async fn rotate_for(
        &self,
        principal: &Principal,
        refresh_token: &str,
        ctx: &ClientContext,
    ) -> Result<Authenticated, Error> {
        self.rotate(refresh_token, Some(principal.session_id), ctx)
            .await
    }

    /// The refresh token that `presented` is rotated into: an HMAC of it under a key derived
    /// from the master key. Deterministic, so the grace window can hand the same successor out
    /// again without storing it in a readable form; unpredictable without the master key.
    fn successor_of(&self, presented: &str) -> String {
        let tag = self
            .master
            .sign(&[b"refresh-successor v1", presented.as_bytes()]);
        URL_SAFE_NO_PAD.encode(tag.as_ref())
    }

    async fn rotate(
        &self,
        presented: &str,
        expected_session: Option<Uuid>,
        ctx: &ClientContext,
    ) -> Result<Authenticated, Error> {
        let presented = presented.trim();
        if !looks_like_token(presented, REFRESH_TOKEN_LEN) {
            return Err(Error::InvalidRefreshToken);
        }
        let now = self.now();
        let presented_hash = token_hash(presented);
        if let Some(expected) = expected_session {
            let owner = self
                .store
                .refresh_token_session(&presented_hash, now)
                .await?;
            if owner.is_none_or(|s| s.id != expected) {
                return Err(Error::InvalidRefreshToken);
            }
        }
        let next = self.successor_of(presented);
        let reuse_since = (self.config.refresh_reuse_interval > chrono::Duration::zero())
            .then(|| now - self.config.refresh_reuse_interval);
        let on_reuse = |user_id: Uuid, session_id: Uuid| {
            self.event(
                kind::REFRESH_TOKEN_REUSED,
                Outcome::Failure,
                Some(user_id),
                None,
                json!({"session_id": session_id, "action": "session_revoked"}),
            )
        };
        let outcome = self
            .store
            .rotate_refresh_token(
                &presented_hash,
                &token_hash(&next),
                now + self.config.refresh_ttl,
                self.config.session_max_lifetime,
                ctx.ip.as_deref(),
                now,
                reuse_since,
                &on_reuse,
            )
            .await?;
        let Rotation { session, user } = match outcome {
            RotateOutcome::Rotated(rotation) => *rotation,
            RotateOutcome::Replayed(rotation) => {
                tracing::debug!(session_id = %rotation.session.id, "spent refresh token replayed within the grace window");
                *rotation
            }
            RotateOutcome::ReuseDetected {
                session_id,
                user_id,
            } => {
                tracing::warn!(%user_id, %session_id, "refresh token reuse detected: session revoked");
                self.sessions_revoked(&[session_id]).await;
                committed(&[on_reuse(user_id, session_id)]);
                return Err(Error::InvalidRefreshToken);
            }
            RotateOutcome::Invalid => return Err(Error::InvalidRefreshToken),
        };
        if !user.is_active {
            return Err(Error::InvalidRefreshToken);
        }
        crate::metrics::refresh_rotated();
        let access_token = self.keys.issue(
            user.id,
            session.id,
            &session.amr,
            &user.roles,
            now,
            self.config.access_ttl,
        )?;
        Ok(Authenticated {
            access_token,
            refresh_token: next,
            expires_in: self.config.access_ttl.num_seconds(),
            session_id: session.id,
            user,
            device_token: None,
        })
    }

    /// Checks a bearer access token: signature, claims, and that its session is still usable.
    ///
    /// # Errors
    /// `InvalidAccessToken`.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, Error> {
        Ok(self.authenticate_claims(token).await?.0)
    }

    /// [`Auth::authenticate`], also returning the token's verified claims.
    ///
    /// # Errors
    /// `InvalidAccessToken`.
    pub async fn authenticate_claims(
        &self,
        token: &str,
    ) -> Result<(Principal, Arc<AccessClaims>), Error> {
        let now = self.now();
        if self.keys.take_key_lost() {
            self.cache.forget_verified();
        }
        let claims = match self.cache.verified_claims(token).await {
            Some(verified) if verified.until > now.timestamp() => verified.claims,
            Some(_) => return Err(Error::InvalidAccessToken),
            None => {
                if token.len() > 4096 {
                    return Err(Error::InvalidAccessToken);
                }
                let (claims, key_until) = self.keys.verify(token, now).await?;
                let claims = Arc::new(claims);
                let expiry = claims.exp + 5;
                let until = key_until.map_or(expiry, |t| expiry.min(t.timestamp()));
                self.cache
                    .remember_verified(
                        token,
                        crate::sessions::VerifiedToken {
                            claims: claims.clone(),
                            until,
                        },
                    )
                    .await;
                claims
            }
        };
        let session_id = Uuid::parse_str(&claims.sid).map_err(|_| Error::InvalidAccessToken)?;
        let user_id = Uuid::parse_str(&claims.sub).map_err(|_| Error::InvalidAccessToken)?;
        let principal = self.principal_for_session(session_id, user_id).await?;
        Ok((principal, claims))
    }

    /// Signs out: revokes the caller's session.
    ///
    /// # Errors
    /// On store failure.
    pub async fn logout(&self, principal: &Principal) -> Result<(), Error> {
        let revoked = [self.event(
            kind::SESSION_REVOKED,
            Outcome::Success,
            Some(principal.user_id),
            None,
            json!({"session_id": principal.session_id, "reason": "sign_out"}),
        )];
        if self
            .store
            .revoke_session(
                principal.user_id,
                principal.session_id,
                self.now(),
                &revoked,
            )
            .await?
        {
            tracing::info!(user_id = %principal.user_id, session_id = %principal.session_id, "signed out");
            committed(&revoked);
        }
        self.sessions_revoked(&[principal.session_id]).await;
        Ok(())
    }

    /// Revokes the session a refresh token belongs to (RFC 7009 style: unknown tokens are not an
    /// error). With a principal, only the principal's own sessions can be revoked this way.
    ///
    /// # Errors
    /// On store failure.
    pub async fn revoke_refresh_token(
        &self,
        principal: Option<&Principal>,
        refresh_token: &str,
    ) -> Result<(), Error> {
        let token = refresh_token.trim();
        if !looks_like_token(token, REFRESH_TOKEN_LEN) {
            return Ok(());
        }
        let now = self.now();
        let Some(session) = self
            .store
            .refresh_token_session(&token_hash(token), now)
            .await?
        else {
            return Ok(());
        };
        if principal.is_some_and(|p| p.user_id != session.user_id) {
            return Ok(());
        }
        let revoked = [self.event(
            kind::SESSION_REVOKED,
            Outcome::Success,
            Some(session.user_id),
            principal,
            json!({"session_id": session.id, "reason": "token_revoked"}),
        )];
        if self
            .store
            .revoke_session(session.user_id, session.id, now, &revoked)
            .await?
        {
            committed(&revoked);
        }
        self.sessions_revoked(&[session.id]).await;
        Ok(())
    }
}
