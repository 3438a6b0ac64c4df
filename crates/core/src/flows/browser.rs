//! Browser sessions: the hosted UI and cookie-authenticated API calls.
//!
//! A browser session is an ordinary session row (listed among devices, revocable, checked on
//! every request like a bearer token's), reached through an opaque cookie instead of a refresh
//! token; only the cookie's SHA-256 is stored.
//!
//! CSRF uses signed double-submit tokens: the token is a random nonce with an HMAC (key derived
//! from the master key) over the nonce and the session it belongs to (the cookie's hash, or
//! nothing before sign-in). The browser holds it in a cookie and echoes it in a header or form
//! field; the server checks the two match *and* that the signature binds the token to the
//! caller's session, so a token planted from elsewhere or taken from another session fails.

use secrecy::SecretString;
use uuid::Uuid;

use crate::crypto::{random_bytes, random_token, token_hash};
use crate::error::Error;
use crate::flows::login::looks_like_token;
use crate::flows::mfa::{SecondStep, SignIn};
use crate::service::{Auth, Authenticated, ClientContext, Principal};

/// Session and device cookies are 32 random bytes, base64url: 43 characters.
pub const COOKIE_TOKEN_LEN: usize = 43;

const CSRF_NONCE: usize = 18;
const CSRF_TAG: usize = 18;

/// A browser sign-in: the tokens of an ordinary sign-in, plus the session cookie's value.
pub struct BrowserSession {
    /// The sign-in (its refresh token is never handed to the browser).
    pub signed_in: Authenticated,
    /// The session cookie (shown once, stored hashed).
    pub cookie: String,
    /// A CSRF token bound to the new session.
    pub csrf: String,
}

/// What a browser's password sign-in leads to.
#[derive(Debug)]
pub enum BrowserSignIn {
    /// Signed in.
    Done(Box<BrowserSession>),
    /// A second step is needed first.
    SecondStep(SecondStep),
}

impl std::fmt::Debug for BrowserSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserSession")
            .field("signed_in", &self.signed_in)
            .finish_non_exhaustive()
    }
}

fn binding(session_cookie: Option<&str>) -> String {
    session_cookie.map(token_hash).unwrap_or_default()
}

impl Auth {
    /// A CSRF token for the browser holding `session_cookie` (or none, before sign-in).
    #[must_use]
    pub fn csrf_token(&self, session_cookie: Option<&str>) -> String {
        use base64::Engine as _;
        let nonce = random_bytes::<CSRF_NONCE>();
        let tag = self
            .master
            .sign(&[b"csrf", &nonce, binding(session_cookie).as_bytes()]);
        let mut raw = nonce.to_vec();
        raw.extend_from_slice(&tag.as_ref()[..CSRF_TAG]);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }

    /// Whether `presented` (header or form field) equals the CSRF cookie and was issued for this
    /// browser's session. Constant time.
    #[must_use]
    pub fn csrf_valid(
        &self,
        cookie: Option<&str>,
        presented: Option<&str>,
        session_cookie: Option<&str>,
    ) -> bool {
        use base64::Engine as _;
        let (Some(cookie), Some(presented)) = (cookie, presented) else {
            return false;
        };
        if !crate::crypto::ct_eq(cookie.as_bytes(), presented.as_bytes()) {
            return false;
        }
        let Ok(raw) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(presented) else {
            return false;
        };
        if raw.len() != CSRF_NONCE + CSRF_TAG {
            return false;
        }
        let (nonce, tag) = raw.split_at(CSRF_NONCE);
        self.master
            .verify(&[b"csrf", nonce, binding(session_cookie).as_bytes()], tag)
    }

    /// Signs a browser in: an ordinary sign-in whose session is reached by a cookie, or the
    /// second step it needs (finished with [`Auth::verify_second_step`], then
    /// [`Auth::attach_browser`]).
    ///
    /// # Errors
    /// As [`Auth::login`].
    pub async fn login_browser(
        &self,
        identifier: &str,
        password: &SecretString,
        ctx: &ClientContext,
    ) -> Result<BrowserSignIn, Error> {
        Ok(match self.login(identifier, password, ctx).await? {
            SignIn::Done(signed_in) => {
                BrowserSignIn::Done(Box::new(self.attach_browser(*signed_in).await?))
            }
            SignIn::SecondStep(step) => BrowserSignIn::SecondStep(step),
        })
    }

    /// Gives a new session a browser cookie (and a CSRF token bound to it).
    ///
    /// # Errors
    /// On store failure.
    pub async fn attach_browser(&self, signed_in: Authenticated) -> Result<BrowserSession, Error> {
        let cookie = random_token::<32>();
        self.store
            .attach_session_cookie(signed_in.session_id, &token_hash(&cookie))
            .await?;
        let csrf = self.csrf_token(Some(&cookie));
        Ok(BrowserSession {
            signed_in,
            cookie,
            csrf,
        })
    }

    /// Authenticates a session cookie: the session must exist, be live and its owner active.
    ///
    /// # Errors
    /// `InvalidAccessToken`.
    pub async fn authenticate_cookie(&self, cookie: &str) -> Result<Principal, Error> {
        if !looks_like_token(cookie, COOKIE_TOKEN_LEN) {
            return Err(Error::InvalidAccessToken);
        }
        let hash = token_hash(cookie);
        let (session_id, user_id) = match self.cookie_sessions.get(&hash).await {
            Some(ids) => ids,
            None => {
                let ids = self
                    .store
                    .session_by_cookie(&hash)
                    .await?
                    .ok_or(Error::InvalidAccessToken)?;
                self.cookie_sessions.insert(hash, ids).await;
                ids
            }
        };
        self.principal_for_session(session_id, user_id).await
    }

    pub(crate) async fn principal_for_session(
        &self,
        session_id: Uuid,
        user_id: Uuid,
    ) -> Result<Principal, Error> {
        let now = self.now();
        let state = self
            .cache
            .state(self.store.as_ref(), session_id)
            .await?
            .ok_or(Error::InvalidAccessToken)?;
        if !state.usable || state.user_id != user_id || state.expires_at <= now {
            return Err(Error::InvalidAccessToken);
        }
        let perms = self
            .grants
            .get(self.store.as_ref(), user_id)
            .await?
            .builtin();
        Ok(Principal {
            user_id,
            session_id,
            perms,
        })
    }
}

/// Length of the keyed identifier tag in the attempts cookie.
const ATTEMPT_ID_TAG: usize = 12;
/// Tag ‖ count ‖ last failure (unix seconds, big-endian).
const ATTEMPT_BODY: usize = ATTEMPT_ID_TAG + 1 + 8;

/// What one browser's recent failed sign-ins for one identifier say about the lock.
///
/// The hosted UI keeps this in a signed cookie so that it can *tell* the person at the keyboard
/// that the sign-in is locked (seed 003) without the server revealing anything: it only repeats
/// what this browser itself did. Five consecutive failures for one identifier — account or not —
/// lock it on the server for the lock duration; this tracker approximates that rule from one
/// browser's view (one identifier at a time, as typed), so it only ever chooses which message to
/// show. The server's lock is what refuses sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptState {
    /// Consecutive failures this browser made for this identifier.
    pub failures: u8,
    /// Whole minutes left of the lock, when this browser's failures locked it.
    pub locked_minutes: Option<i64>,
}

impl Auth {
    fn attempt_tag(&self, identifier: &str) -> [u8; ATTEMPT_ID_TAG] {
        // The key the sign-in looks the account up by: two spellings of one address count together.
        let login = crate::domain::login_key(identifier);
        let tag = self.master.sign(&[b"ui-attempts-id", login.as_bytes()]);
        let mut out = [0u8; ATTEMPT_ID_TAG];
        out.copy_from_slice(&tag.as_ref()[..ATTEMPT_ID_TAG]);
        out
    }

    /// Failures that lock, as the cookie counts them.
    fn attempt_threshold(&self) -> u8 {
        u8::try_from(self.config.lockout_attempts.max(1)).unwrap_or(u8::MAX)
    }

    fn read_attempts(&self, cookie: Option<&str>, identifier: &str) -> (u8, i64) {
        use base64::Engine as _;
        let Some(raw) = cookie.and_then(|c| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(c)
                .ok()
        }) else {
            return (0, 0);
        };
        if raw.len() != ATTEMPT_BODY + CSRF_TAG {
            return (0, 0);
        }
        let (body, tag) = raw.split_at(ATTEMPT_BODY);
        if !self.master.verify(&[b"ui-attempts", body], tag)
            || !crate::crypto::ct_eq(&body[..ATTEMPT_ID_TAG], &self.attempt_tag(identifier))
        {
            return (0, 0);
        }
        let mut at = [0u8; 8];
        at.copy_from_slice(&body[ATTEMPT_ID_TAG + 1..]);
        let last = i64::from_be_bytes(at);
        // Failures further apart than the lock duration do not add up (the server's counter
        // would have been reset by the lock expiring or gone stale).
        if self.now().timestamp() - last >= self.config.lockout_duration.num_seconds() {
            return (0, 0);
        }
        (body[ATTEMPT_ID_TAG], last)
    }

    /// The lock state this browser's attempts cookie records for `identifier`.
    #[must_use]
    pub fn attempt_state(&self, cookie: Option<&str>, identifier: &str) -> AttemptState {
        let (failures, last) = self.read_attempts(cookie, identifier);
        let locked_minutes = (failures >= self.attempt_threshold()).then(|| {
            let left = last + self.config.lockout_duration.num_seconds() - self.now().timestamp();
            (left + 59) / 60
        });
        AttemptState {
            failures,
            locked_minutes: locked_minutes.filter(|m| *m > 0),
        }
    }

    /// The attempts cookie after one more failure for `identifier`, and the state it records.
    #[must_use]
    pub fn attempt_failed(&self, cookie: Option<&str>, identifier: &str) -> (String, AttemptState) {
        use base64::Engine as _;
        let (failures, last) = self.read_attempts(cookie, identifier);
        // Like the server, failures during a lock do not extend it: the lock runs from the
        // failure that started it.
        let at = if failures >= self.attempt_threshold() {
            last
        } else {
            self.now().timestamp()
        };
        let mut body = self.attempt_tag(identifier).to_vec();
        body.push(failures.saturating_add(1));
        body.extend_from_slice(&at.to_be_bytes());
        let tag = self.master.sign(&[b"ui-attempts", &body]);
        body.extend_from_slice(&tag.as_ref()[..CSRF_TAG]);
        let value = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(body);
        let state = self.attempt_state(Some(&value), identifier);
        (value, state)
    }
}
