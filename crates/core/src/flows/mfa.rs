//! Multi-factor sign-in: the second step of a sign-in (on [`Auth`], because it *is* the sign-in
//! path) and the management of authenticator apps and backup codes ([`TwoFactor`], a service of
//! its own).
//!
//! # The second step
//! ```text
//! login(password ok) ──needs a second step?──no──▶ session
//!        │ yes
//!        ▼
//! challenge stored (mfa_token, ≤ 5 min, methods, amr = [pwd]) ──▶ client gets mfa_token
//!        │
//!        ├─ wrong code ──▶ challenge failures + 1 (dies at 5) and the account's (or known
//!        │                 device's) failure count + 1, exactly like a wrong password
//!        ├─ resend (email) ──▶ new code, same failure count, ≤ 1/min and 5 per challenge
//!        └─ right code ──▶ one transaction: challenge spent + factor spent (TOTP step recorded,
//!                          backup code used, emailed code matched) + failure count reset
//!                          (refused while locked) ──▶ session with amr = [pwd, otp|email]
//! ```
//! The `mfa_token` is opaque (not a JWT), so no bearer check can accept it. It is bound to the
//! client (a keyed hash of the address and user agent): presented by anyone else, it is unknown.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::json;
use std::sync::Arc;
use uuid::Uuid;

use crate::clock::Clock;
use crate::config::{AuthConfig, EmailCodeRule};
use crate::credentials::PasswordHasher;
use crate::crypto::{MasterKey, ct_eq, hex, random_bytes, random_token, token_hash};
use crate::domain::User;
use crate::domain::audit::{NewAuditEvent, Outcome, kind};
use crate::domain::mfa::{
    CompleteOutcome, EmailCodeOutcome, Method, MfaChallenge, NewMfaChallenge, SpentFactor,
};
use crate::domain::rbac::Permission;
use crate::error::Error;
use crate::flows::audit::{committed, lock_event, new_event};
use crate::flows::login::looks_like_token;
use crate::mail::{MailKind, Outbox};
use crate::service::{Auth, Authenticated, ClientContext, Principal};
use crate::store::{SealedColumn, Store};

/// `mfa_token`s are 32 random bytes, base64url: 43 characters.
const MFA_TOKEN_LEN: usize = 43;
/// Backup codes per set.
pub const BACKUP_CODES_PER_SET: usize = 10;
/// Characters of a backup code (Crockford base32, 5 bits each: 60 bits).
const BACKUP_CODE_CHARS: usize = 12;
/// Crockford's base32 alphabet, lower case: no `i`, `l`, `o`, `u`.
const CROCKFORD: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// TOTP parameters every authenticator app supports (RFC 6238 defaults).
const TOTP_DIGITS: usize = 6;
const TOTP_STEP_SECS: u64 = 30;
/// Bytes of a TOTP secret (160 bits, RFC 4226's recommendation).
const TOTP_SECRET_BYTES: usize = 20;
/// Codes a second step may mail: the first and five resends.
const MAX_EMAIL_CODES: i32 = 6;
/// How recent a sign-in must be to turn two-factor authentication on without the password.
pub const REAUTH_WINDOW: chrono::Duration = chrono::Duration::minutes(5);
/// Minimum interval between two mailed codes of one second step.
const EMAIL_RESEND_INTERVAL_SECS: i64 = 60;

/// What a sign-in with a correct password leads to.
#[derive(Debug)]
pub enum SignIn {
    /// No second step: the session is open.
    Done(Box<Authenticated>),
    /// A second step is needed before any session exists.
    SecondStep(SecondStep),
}

/// The answer to a password that needs a second step.
#[derive(Clone)]
pub struct SecondStep {
    /// The opaque, single-use token naming the second step.
    pub mfa_token: String,
    /// The methods this account can use now.
    pub methods: Vec<Method>,
    /// An authenticator app (or a backup code) is asked for.
    pub requires_2fa: bool,
    /// A code was mailed and is asked for.
    pub requires_email_verification: bool,
    /// Seconds the `mfa_token` lives.
    pub expires_in: i64,
}

impl std::fmt::Debug for SecondStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecondStep")
            .field("methods", &self.methods)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// A second step waiting for its code, as [`Auth::pending_second_step`] describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSecondStep {
    /// The methods this sign-in may use.
    pub methods: Vec<Method>,
    /// A code was mailed for this sign-in (at its start, or on request).
    pub email_sent: bool,
}

/// A code presented for a second step or a re-authentication.
#[derive(Clone)]
pub enum SecondFactor {
    /// A 6-digit authenticator code.
    Totp(String),
    /// A backup code.
    BackupCode(String),
    /// A 6-digit code from the sign-in mail.
    EmailCode(String),
}

impl SecondFactor {
    /// The method this factor belongs to.
    #[must_use]
    pub fn method(&self) -> Method {
        match self {
            Self::Totp(_) => Method::Totp,
            Self::BackupCode(_) => Method::BackupCode,
            Self::EmailCode(_) => Method::Email,
        }
    }

    /// A one-field code from the compact API's `otp`: six digits are an authenticator code,
    /// anything else a backup code.
    #[must_use]
    pub fn from_otp(otp: &str) -> Self {
        if six_digits(otp).is_some() {
            Self::Totp(otp.to_owned())
        } else {
            Self::BackupCode(otp.to_owned())
        }
    }
}

impl std::fmt::Debug for SecondFactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecondFactor({})", self.method().as_str())
    }
}

/// The six digits of a code, without the spaces or dash apps show in the middle.
fn six_digits(code: &str) -> Option<String> {
    if code.len() > 32 {
        return None;
    }
    let digits: String = code
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    (digits.len() == TOTP_DIGITS && digits.bytes().all(|b| b.is_ascii_digit())).then_some(digits)
}

fn code_format_error(field: &'static str) -> Error {
    Error::validation(field, "invalid_code_format", "Enter the 6-digit code.")
}

/// A backup code in canonical form (lower case, no separators, Crockford's look-alikes
/// mapped), if it has the shape of one.
fn canonical_backup_code(code: &str) -> Option<String> {
    if code.len() > 64 {
        return None;
    }
    let mut out = String::with_capacity(BACKUP_CODE_CHARS);
    for c in code.chars() {
        if c.is_whitespace() || c == '-' {
            continue;
        }
        let c = match c.to_ascii_lowercase() {
            'o' => '0',
            'i' | 'l' => '1',
            c => c,
        };
        if !CROCKFORD.contains(&u8::try_from(c).ok()?) {
            return None;
        }
        out.push(c);
    }
    (out.len() == BACKUP_CODE_CHARS).then_some(out)
}

/// A fresh backup code, grouped for reading: `xxxx-xxxx-xxxx`.
fn new_backup_code() -> String {
    let bits = u64::from_be_bytes(random_bytes::<8>());
    let mut out = String::with_capacity(BACKUP_CODE_CHARS + 2);
    for i in 0..BACKUP_CODE_CHARS {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        let index = ((bits >> (i * 5)) & 0x1f) as usize;
        out.push(char::from(CROCKFORD[index]));
    }
    out
}

/// Keyed hash of a backup code: a database dump alone does not allow guessing codes offline.
fn backup_code_hash(master: &MasterKey, user_id: Uuid, canonical: &str) -> String {
    hex(master
        .sign(&[
            b"porteiro-backup-code-v1",
            user_id.as_bytes(),
            canonical.as_bytes(),
        ])
        .as_ref())
}

/// Keyed hash of an emailed code, bound to its challenge.
fn email_code_hash(master: &MasterKey, challenge_id: Uuid, digits: &str) -> String {
    hex(master
        .sign(&[
            b"porteiro-email-code-v1",
            challenge_id.as_bytes(),
            digits.as_bytes(),
        ])
        .as_ref())
}

/// A fresh 6-digit code, uniform (rejection sampling over the CSPRNG).
fn new_email_code() -> String {
    loop {
        let n = u32::from_be_bytes(random_bytes::<4>());
        // 4_294_000_000 is the largest multiple of 1_000_000 below 2^32.
        if n < 4_294_000_000 {
            return format!("{:06}", n % 1_000_000);
        }
    }
}

/// The TOTP of a secret (SHA-1, 6 digits, 30 s, ±1 step), labelled for apps when `label` is
/// given (issuer, account name).
fn totp(secret: &[u8], label: Option<(&str, &str)>) -> Result<totp_rs::Totp, Error> {
    let mut builder = totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(TOTP_DIGITS as u8)
        .with_skew(1)
        .with_step_duration(TOTP_STEP_SECS)
        .with_secret(secret.to_vec());
    if let Some((issuer, account)) = label {
        builder = builder
            .with_issuer(Some(issuer.replace(':', " ")))
            .with_account_name(account.replace(':', " "));
    }
    builder
        .build()
        .map_err(|e| Error::Internal(anyhow::anyhow!("totp parameters: {e}")))
}

/// The step whose code `digits` is, within ±1 step of `now`.
fn matching_step(secret: &[u8], digits: &str, now: DateTime<Utc>) -> Result<Option<i64>, Error> {
    let time = u64::try_from(now.timestamp()).unwrap_or(0);
    Ok(totp(secret, None)?
        .check(digits, time)
        .and_then(|step| i64::try_from(step).ok()))
}

fn amr_with(amr: &[String], method: Method) -> Vec<String> {
    let mut out = amr.to_vec();
    if !out.iter().any(|m| m == method.amr()) {
        out.push(method.amr().to_owned());
    }
    out
}

/// Keyed hash of the client a first step came from (address and user agent).
fn client_hash(master: &MasterKey, ctx: &ClientContext) -> String {
    hex(master
        .sign(&[
            b"porteiro-mfa-client-v1",
            ctx.ip.as_deref().unwrap_or("").as_bytes(),
            ctx.user_agent.as_deref().unwrap_or("").as_bytes(),
        ])
        .as_ref())
}

impl Auth {
    /// What a correct password for an active account leads to: the second step the account
    /// needs, if any (`known_device`: the password came from a device it signed in from before).
    ///
    /// # Errors
    /// On store failure.
    pub(crate) async fn second_step_methods(
        &self,
        user: &User,
        known_device: bool,
    ) -> Result<Option<(Vec<Method>, bool)>, Error> {
        let rules = &self.config.mfa;
        let credential = self.store.totp_credential(user.id).await?;
        if let Some(c) = credential.filter(|c| c.enabled_at.is_some()) {
            let mut methods = vec![Method::Totp];
            if c.backup_codes_remaining > 0 {
                methods.push(Method::BackupCode);
            }
            if rules.email_fallback {
                methods.push(Method::Email);
            }
            return Ok(Some((methods, false)));
        }
        let email = match rules.email_code {
            EmailCodeRule::Off => false,
            EmailCodeRule::NewDevice => !known_device,
            EmailCodeRule::Always => true,
        };
        Ok(email.then(|| (vec![Method::Email], true)))
    }

    /// Stores the second step of a sign-in whose password was correct and answers with its
    /// `mfa_token`. `user` is the account as read before the password check. When the emailed
    /// code is the only method, the first code is mailed now.
    ///
    /// # Errors
    /// On store failure.
    pub(crate) async fn begin_second_step(
        &self,
        user: &User,
        methods: Vec<Method>,
        email_first: bool,
        ctx: &ClientContext,
        device_hash: Option<String>,
        known_device: bool,
    ) -> Result<SecondStep, Error> {
        let now = self.now();
        let rules = &self.config.mfa;
        let id = Uuid::new_v4();
        let token = random_token::<32>();
        let email_code = email_first.then(new_email_code);
        let challenge = NewMfaChallenge {
            id,
            token_hash: token_hash(&token),
            user_id: user.id,
            credential_epoch: user.credential_epoch,
            client_hash: client_hash(&self.master, ctx),
            device_hash,
            known_device,
            methods: methods.clone(),
            amr: vec!["pwd".to_owned()],
            email_code: email_code.as_deref().map(|c| {
                (
                    email_code_hash(&self.master, id, c),
                    now + rules.email_code_ttl,
                )
            }),
            now,
            expires_at: now + rules.challenge_ttl,
        };
        let names: Vec<_> = methods.iter().map(|m| m.as_str()).collect();
        let started = [self.event(
            kind::SIGN_IN_SECOND_STEP,
            Outcome::Success,
            Some(user.id),
            None,
            json!({"methods": names, "known_device": known_device}),
        )];
        self.store
            .insert_mfa_challenge(&challenge, &started)
            .await?;
        committed(&started);
        if let Some(code) = &email_code {
            self.mail_sign_in_code(user, code).await;
        }
        Ok(SecondStep {
            mfa_token: token,
            requires_2fa: methods.contains(&Method::Totp),
            requires_email_verification: email_first,
            methods,
            expires_in: rules.challenge_ttl.num_seconds(),
        })
    }

    async fn mail_sign_in_code(&self, user: &User, code: &str) {
        notify(
            &self.outbox,
            user,
            MailKind::SignInCode { code },
            &self.config.product_name,
        )
        .await;
    }

    /// The live challenge an `mfa_token` names, if this client presents it.
    async fn live_challenge(
        &self,
        mfa_token: &str,
        ctx: &ClientContext,
    ) -> Result<MfaChallenge, Error> {
        let mfa_token = mfa_token.trim();
        if !looks_like_token(mfa_token, MFA_TOKEN_LEN) {
            return Err(Error::InvalidMfaToken);
        }
        let challenge = self
            .store
            .mfa_challenge(
                &token_hash(mfa_token),
                self.config.mfa.max_attempts,
                self.now(),
            )
            .await?
            .ok_or(Error::InvalidMfaToken)?;
        if !ct_eq(
            client_hash(&self.master, ctx).as_bytes(),
            challenge.client_hash.as_bytes(),
        ) {
            return Err(Error::InvalidMfaToken);
        }
        Ok(challenge)
    }

    /// What a pending second step offers, for a page that asks for it: the methods, and
    /// whether a code was mailed already. Reads only; nothing is counted or spent.
    ///
    /// # Errors
    /// `InvalidMfaToken` (unknown, expired, spent, dead, other client); store failures.
    pub async fn pending_second_step(
        &self,
        mfa_token: &str,
        ctx: &ClientContext,
    ) -> Result<PendingSecondStep, Error> {
        let challenge = self.live_challenge(mfa_token, ctx).await?;
        Ok(PendingSecondStep {
            email_sent: challenge.email_codes_sent > 0,
            methods: challenge.methods,
        })
    }

    /// Completes the second step of a sign-in with a code, opening the session.
    ///
    /// # Errors
    /// `InvalidMfaToken` (unknown, expired, spent, dead, other client), `MfaState`
    /// (`mfa_method_not_allowed`), `Validation` (malformed code: nothing counted), `InvalidCode`
    /// (counted towards the challenge's and the account's limits), `InvalidCredentials` (the
    /// account is locked, or its password changed meanwhile), `AccountDisabled`.
    pub async fn verify_second_step(
        &self,
        mfa_token: &str,
        factor: &SecondFactor,
        ctx: &ClientContext,
    ) -> Result<Authenticated, Error> {
        let challenge = self.live_challenge(mfa_token, ctx).await?;
        let method = factor.method();
        if !challenge.methods.contains(&method) {
            return Err(Error::MfaState {
                code: "mfa_method_not_allowed",
                message: "This method cannot be used for this sign-in.",
            });
        }
        // A malformed code is refused before anything is counted.
        let code = match factor {
            SecondFactor::Totp(code) | SecondFactor::EmailCode(code) => {
                six_digits(code).ok_or_else(|| code_format_error("code"))?
            }
            SecondFactor::BackupCode(code) => canonical_backup_code(code).ok_or_else(|| {
                Error::validation(
                    "backup_code",
                    "invalid_code_format",
                    "Enter one of your backup codes.",
                )
            })?,
        };
        let now = self.now();
        let Some(mut user) = self.store.user_by_id(challenge.user_id).await? else {
            return Err(Error::InvalidMfaToken);
        };
        // The password changed (or was reset, or every session revoked) since the first step:
        // this sign-in is over, before any factor is spent.
        if user.credential_epoch != challenge.credential_epoch {
            return Err(Error::InvalidMfaToken);
        }
        // Every look at a code first takes one of the challenge's attempts, atomically: of
        // concurrent guesses on one token no more than the limit are ever evaluated. A right
        // code completes below whatever the count (its own attempt included); a wrong one
        // leaves the attempt taken.
        let max = self.config.mfa.max_attempts;
        if self
            .store
            .fail_mfa_challenge(challenge.id, max, now)
            .await?
            .is_none()
        {
            return Err(Error::InvalidMfaToken);
        }
        // While the account (or the known device the first step came from) is locked, no code
        // is looked at: right and wrong codes get the same answer, so a lock cannot tell them
        // apart (and the attempt taken above makes waiting tokens die).
        if self.second_step_locked(&challenge, &user, now).await? {
            self.second_step_refused(user.id, "locked").await;
            return Err(Error::InvalidCredentials);
        }
        let spent = match factor {
            SecondFactor::Totp(_) => {
                let digits = code;
                let credential = self
                    .store
                    .totp_credential(user.id)
                    .await?
                    .filter(|c| c.enabled_at.is_some())
                    .ok_or(Error::InvalidMfaToken)?;
                let secret = self
                    .envelope
                    .open_column(
                        SealedColumn::TotpSecret,
                        &user.id.to_string(),
                        &credential.secret_enc,
                    )
                    .await?;
                matching_step(&secret, &digits, now)?.map(SpentFactor::TotpStep)
            }
            SecondFactor::BackupCode(_) => Some(SpentFactor::BackupCode(backup_code_hash(
                &self.master,
                user.id,
                &code,
            ))),
            SecondFactor::EmailCode(_) => {
                let hash = email_code_hash(&self.master, challenge.id, &code);
                let current = challenge.email_code_hash.as_deref().is_some_and(|stored| {
                    ct_eq(stored.as_bytes(), hash.as_bytes())
                        && challenge.email_code_expires_at.is_some_and(|t| t > now)
                });
                current.then_some(SpentFactor::EmailCode(hash))
            }
        };
        let Some(spent) = spent else {
            return Err(self
                .second_step_failed(&challenge, method, "wrong_code")
                .await);
        };
        if !user.is_active {
            self.second_step_refused(user.id, "disabled").await;
            return Err(Error::AccountDisabled);
        }
        let used = (method == Method::BackupCode).then(|| {
            self.event(
                kind::MFA_BACKUP_CODE_USED,
                Outcome::Success,
                Some(user.id),
                None,
                json!({"purpose": "sign_in"}),
            )
        });
        let events: Vec<NewAuditEvent> = used.into_iter().collect();
        match self
            .store
            // The attempt this code took counts as one of the limit's, not one past it.
            .complete_mfa_challenge(challenge.id, &spent, max.saturating_add(1), now, &events)
            .await?
        {
            CompleteOutcome::Completed => {}
            CompleteOutcome::ChallengeGone => return Err(Error::InvalidMfaToken),
            CompleteOutcome::FactorRejected => {
                let reason = match method {
                    Method::Totp => "code_reused",
                    _ => "wrong_code",
                };
                return Err(self.second_step_failed(&challenge, method, reason).await);
            }
            CompleteOutcome::AccountLocked => {
                self.second_step_refused(user.id, "locked").await;
                return Err(Error::InvalidCredentials);
            }
        }
        committed(&events);
        if method == Method::BackupCode {
            notify(
                &self.outbox,
                &user,
                MailKind::BackupCodeUsed,
                &self.config.product_name,
            )
            .await;
        }
        // The session is bound to the credential verified by the first step.
        user.credential_epoch = challenge.credential_epoch;
        let known = challenge.known_device
            && match (&challenge.device_hash, &ctx.device) {
                (Some(stored), Some(cookie)) => {
                    ct_eq(stored.as_bytes(), token_hash(cookie).as_bytes())
                }
                _ => false,
            };
        let amr = amr_with(&challenge.amr, method);
        let details = json!({
            "method": "password",
            "second_factor": method.as_str(),
            "amr": amr,
            "known_device": known,
        });
        self.open_signed_in_session(user, ctx, known, amr, details)
            .await
    }

    /// A wrong code (its attempt on the challenge already taken): counted, like a wrong
    /// password, on the account — or on the known device the first step came from.
    async fn second_step_failed(
        &self,
        challenge: &MfaChallenge,
        method: Method,
        reason: &'static str,
    ) -> Error {
        let result = async {
            let now = self.now();
            let (attempts, lock_until) = (
                self.config.lockout_attempts,
                now + self.config.lockout_duration,
            );
            let user_id = challenge.user_id;
            let failed = self.event(
                kind::SIGN_IN_FAILED,
                Outcome::Failure,
                Some(user_id),
                None,
                json!({"reason": reason, "step": "second", "second_factor": method.as_str()}),
            );
            let (locked_now, locked) = match (&challenge.device_hash, challenge.known_device) {
                (Some(device), true) => {
                    let locked = self.lock_event(user_id, "device", attempts, lock_until);
                    let now_locked = self
                        .store
                        .record_device_failure(
                            user_id, device, now, attempts, lock_until, &failed, &locked,
                        )
                        .await?;
                    (now_locked, locked)
                }
                _ => {
                    let locked = self.lock_event(user_id, "account", attempts, lock_until);
                    let now_locked = self
                        .store
                        .record_failed_login(user_id, now, attempts, lock_until, &failed, &locked)
                        .await?;
                    (now_locked, locked)
                }
            };
            committed(&[failed]);
            if locked_now {
                self.profile_changed(user_id).await;
                tracing::warn!(%user_id, "account locked after repeated wrong second-step codes");
                committed(&[locked]);
            }
            Ok::<_, Error>(())
        }
        .await;
        match result {
            Ok(()) => Error::InvalidCode,
            Err(e) => e,
        }
    }

    /// Whether the lock that applies to this second step is on: the known device's own lock
    /// for a first step from a known device, the account's otherwise.
    async fn second_step_locked(
        &self,
        challenge: &MfaChallenge,
        user: &User,
        now: DateTime<Utc>,
    ) -> Result<bool, Error> {
        match (&challenge.device_hash, challenge.known_device) {
            (Some(device), true) => Ok(self
                .store
                .known_device(user.id, device)
                .await?
                .and_then(|d| d.locked_until)
                .is_some_and(|t| t > now)),
            _ => Ok(user.is_locked(now)),
        }
    }

    async fn second_step_refused(&self, user_id: Uuid, reason: &'static str) {
        self.append_alone(self.event(
            kind::SIGN_IN_FAILED,
            Outcome::Failure,
            Some(user_id),
            None,
            json!({"reason": reason, "step": "second"}),
        ))
        .await;
    }

    /// Mails a (new) code for a second step that offers one. The new code replaces the previous
    /// one; wrong attempts still count.
    ///
    /// # Errors
    /// `InvalidMfaToken`, `MfaState` (`mfa_method_not_allowed`), `RateLimited` (at most one code a
    /// minute and six per second step).
    pub async fn resend_second_step_code(
        &self,
        mfa_token: &str,
        ctx: &ClientContext,
    ) -> Result<(), Error> {
        let challenge = self.live_challenge(mfa_token, ctx).await?;
        if !challenge.methods.contains(&Method::Email) {
            return Err(Error::MfaState {
                code: "mfa_method_not_allowed",
                message: "This sign-in cannot use a code by email.",
            });
        }
        let Some(user) = self.store.user_by_id(challenge.user_id).await? else {
            return Err(Error::InvalidMfaToken);
        };
        let now = self.now();
        let code = new_email_code();
        let interval = chrono::Duration::seconds(EMAIL_RESEND_INTERVAL_SECS);
        match self
            .store
            .set_mfa_email_code(
                challenge.id,
                &email_code_hash(&self.master, challenge.id, &code),
                now + self.config.mfa.email_code_ttl,
                now - interval,
                MAX_EMAIL_CODES,
                self.config.mfa.max_attempts,
                now,
            )
            .await?
        {
            EmailCodeOutcome::Stored => {
                self.mail_sign_in_code(&user, &code).await;
                Ok(())
            }
            EmailCodeOutcome::TooSoon => {
                let wait = challenge
                    .email_last_sent_at
                    .map_or(EMAIL_RESEND_INTERVAL_SECS, |t| {
                        (t + interval - now).num_seconds().max(1)
                    });
                Err(Error::RateLimited {
                    retry_after_secs: u64::try_from(wait).unwrap_or(1),
                })
            }
            EmailCodeOutcome::LimitReached => Err(Error::RateLimited {
                retry_after_secs: u64::try_from((challenge.expires_at - now).num_seconds())
                    .unwrap_or(1)
                    .max(1),
            }),
            EmailCodeOutcome::ChallengeGone => Err(Error::InvalidMfaToken),
        }
    }

    /// The compact API's sign-in: password and, for an account with an authenticator app, the
    /// `otp` (an app or backup code) in one request.
    ///
    /// # Errors
    /// As [`Auth::login`] and [`Auth::verify_second_step`]; `MfaRequired` when the account needs
    /// a second step and no `otp` came (or the second step it needs is an emailed code).
    pub async fn login_with_otp(
        &self,
        identifier: &str,
        password: &SecretString,
        otp: Option<&str>,
        ctx: &ClientContext,
    ) -> Result<Authenticated, Error> {
        match self.login_for(identifier, password, ctx, false).await? {
            SignIn::Done(out) => Ok(*out),
            SignIn::SecondStep(step) => {
                let Some(otp) = otp.filter(|_| step.requires_2fa) else {
                    return Err(Error::MfaRequired);
                };
                self.verify_second_step(&step.mfa_token, &SecondFactor::from_otp(otp), ctx)
                    .await
            }
        }
    }
}

/// Queues a security message to the account's address; a failure is logged, never fatal.
async fn notify(outbox: &Outbox, user: &User, kind: MailKind<'_>, product: &str) {
    if let Err(e) = outbox.queue_for(user, kind, product).await {
        tracing::error!(user_id = %user.id, error = %e, "queueing a security mail failed");
    }
}

/// What `GET /api/users/{id}/2fa/setup` hands out once.
#[derive(Clone)]
pub struct TotpSetup {
    /// The shared secret, base32 (for typing into an app).
    pub secret: String,
    /// `otpauth://totp/…` URI (what the QR code encodes).
    pub otpauth_uri: String,
    /// The QR code as a PNG, base64 (no data-URL prefix).
    pub qr_png_base64: String,
    /// The new backup codes, shown once.
    pub backup_codes: Vec<String>,
}

impl std::fmt::Debug for TotpSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSetup(..)")
    }
}

/// An account's two-factor state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwoFactorStatus {
    /// An authenticator app is enabled.
    pub enabled: bool,
    /// Since when.
    pub enabled_at: Option<DateTime<Utc>>,
    /// Unused backup codes.
    pub backup_codes_remaining: u32,
}

/// Management of authenticator apps and backup codes: setup, enable, disable, new backup codes,
/// status, and the administrators' reset.
pub struct TwoFactor {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    master: Arc<MasterKey>,
    envelope: Arc<crate::envelope::Envelope>,
    hasher: PasswordHasher,
    outbox: Outbox,
    config: AuthConfig,
    grants: crate::grants::GrantsCache,
}

impl std::fmt::Debug for TwoFactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TwoFactor")
    }
}

impl TwoFactor {
    /// The service, sharing the sign-in service's store, keys, hasher, outbox and settings.
    #[must_use]
    pub fn new(auth: &Auth) -> Self {
        Self {
            store: auth.store.clone(),
            clock: auth.clock.clone(),
            master: auth.master.clone(),
            envelope: auth.envelope.clone(),
            hasher: auth.hasher.clone(),
            outbox: auth.outbox.clone(),
            config: auth.config.clone(),
            grants: auth.grants.clone(),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        crate::clock::to_millis_precision(self.clock.now())
    }

    fn event(
        &self,
        event_type: &'static str,
        user_id: Uuid,
        actor: Option<&Principal>,
        details: serde_json::Value,
    ) -> NewAuditEvent {
        new_event(
            self.now(),
            event_type,
            Outcome::Success,
            Some(user_id),
            actor,
            details,
        )
    }

    async fn own_account(&self, principal: &Principal, user_id: Uuid) -> Result<User, Error> {
        // Only the account holder sets up or changes their own factors; administrators reset.
        if principal.user_id != user_id {
            return Err(Error::Forbidden);
        }
        self.store.user_by_id(user_id).await?.ok_or(Error::NotFound)
    }

    fn new_backup_codes(&self, user_id: Uuid) -> (Vec<String>, Vec<String>) {
        let codes: Vec<String> = (0..BACKUP_CODES_PER_SET)
            .map(|_| new_backup_code())
            .collect();
        let hashes = codes
            .iter()
            .filter_map(|c| canonical_backup_code(c))
            .map(|c| backup_code_hash(&self.master, user_id, &c))
            .collect();
        (codes, hashes)
    }

    /// Starts (or restarts) an authenticator-app setup: a new secret and backup codes, active
    /// only once [`TwoFactor::enable`] sees a code from the app.
    ///
    /// # Errors
    /// `NotFound`/`Forbidden` (not the caller's account), `MfaState` (`mfa_already_enabled`).
    pub async fn setup(&self, principal: &Principal, user_id: Uuid) -> Result<TotpSetup, Error> {
        let user = self.own_account(principal, user_id).await?;
        let secret = random_bytes::<TOTP_SECRET_BYTES>();
        let app = totp(&secret, Some((&self.config.mfa.totp_issuer, &user.email)))?;
        let otpauth_uri = app
            .to_url()
            .map_err(|e| anyhow::anyhow!("otpauth URI: {e}"))?;
        let qr_png_base64 = app
            .to_qr_base64()
            .map_err(|e| anyhow::anyhow!("QR code: {e}"))?;
        let (backup_codes, hashes) = self.new_backup_codes(user_id);
        let sealed = self
            .envelope
            .seal_column(SealedColumn::TotpSecret, &user_id.to_string(), &secret)
            .await?;
        if !self
            .store
            .begin_totp_setup(user_id, &sealed, &hashes, self.now())
            .await?
        {
            return Err(already_enabled());
        }
        Ok(TotpSetup {
            secret: app.secret().to_base32(),
            otpauth_uri,
            qr_png_base64,
            backup_codes,
        })
    }

    /// Enables the pending setup once `code` proves the app holds the secret. Turning a second
    /// factor on also makes it needed to sign in, so — lest a stolen access token lock the owner
    /// out with an app of the thief's — it needs a sign-in less than [`REAUTH_WINDOW`] old or
    /// the account's `password`.
    ///
    /// # Errors
    /// `NotFound`/`Forbidden`, `MfaState` (`mfa_already_enabled`, `mfa_setup_required`,
    /// `reauthentication_required`), `IncorrectPassword`, `Validation` (malformed code),
    /// `IncorrectCode`.
    pub async fn enable(
        &self,
        principal: &Principal,
        user_id: Uuid,
        code: &str,
        password: Option<&SecretString>,
    ) -> Result<(), Error> {
        let user = self.own_account(principal, user_id).await?;
        let digits = six_digits(code).ok_or_else(|| code_format_error("totp_code"))?;
        let signed_in = self
            .store
            .session_by_id(principal.session_id)
            .await?
            .map(|s| s.created_at);
        if signed_in.is_none_or(|t| t + REAUTH_WINDOW < self.now()) {
            let password = password.ok_or(Error::MfaState {
                code: "reauthentication_required",
                message: "Confirm with your password: you signed in more than 5 minutes ago.",
            })?;
            self.check_password(&user, password, "enable").await?;
        }
        let credential = self.store.totp_credential(user_id).await?;
        let Some(credential) = credential else {
            return Err(setup_required());
        };
        if credential.enabled_at.is_some() {
            return Err(already_enabled());
        }
        let secret = self
            .envelope
            .open_column(
                SealedColumn::TotpSecret,
                &user_id.to_string(),
                &credential.secret_enc,
            )
            .await?;
        let Some(step) = matching_step(&secret, &digits, self.now())? else {
            return Err(Error::IncorrectCode);
        };
        let enabled = [self.event(
            kind::MFA_ENABLED,
            user_id,
            Some(principal),
            json!({"method": "totp"}),
        )];
        if !self
            .store
            .enable_totp(user_id, &credential.secret_enc, step, self.now(), &enabled)
            .await?
        {
            // Enabled or restarted by a concurrent request.
            return Err(setup_required());
        }
        committed(&enabled);
        tracing::info!(%user_id, "authenticator app enabled");
        notify(
            &self.outbox,
            &user,
            MailKind::TotpEnabled,
            &self.config.product_name,
        )
        .await;
        Ok(())
    }

    /// Re-authentication before a change to the factors themselves: the password and a current
    /// factor (an app code or a backup code), both counted towards the lock when wrong.
    async fn reauthenticate(
        &self,
        user: &User,
        password: &SecretString,
        factor: &SecondFactor,
        purpose: &'static str,
    ) -> Result<(), Error> {
        let credential = self
            .store
            .totp_credential(user.id)
            .await?
            .filter(|c| c.enabled_at.is_some())
            .ok_or(Error::MfaState {
                code: "mfa_not_enabled",
                message: "Two-factor authentication is not enabled.",
            })?;
        let now = self.now();
        self.check_password(user, password, purpose).await?;
        let spent = match factor {
            SecondFactor::Totp(code) => {
                let digits = six_digits(code).ok_or_else(|| code_format_error("totp_code"))?;
                let secret = self
                    .envelope
                    .open_column(
                        SealedColumn::TotpSecret,
                        &user.id.to_string(),
                        &credential.secret_enc,
                    )
                    .await?;
                matching_step(&secret, &digits, now)?.map(SpentFactor::TotpStep)
            }
            SecondFactor::BackupCode(code) => canonical_backup_code(code)
                .map(|c| SpentFactor::BackupCode(backup_code_hash(&self.master, user.id, &c)))
                .map(Some)
                .ok_or_else(|| {
                    Error::validation(
                        "backup_code",
                        "invalid_code_format",
                        "Enter one of your backup codes.",
                    )
                })?,
            SecondFactor::EmailCode(_) => None,
        };
        let used: Vec<NewAuditEvent> = matches!(spent, Some(SpentFactor::BackupCode(_)))
            .then(|| {
                self.event(
                    kind::MFA_BACKUP_CODE_USED,
                    user.id,
                    None,
                    json!({"purpose": purpose}),
                )
            })
            .into_iter()
            .collect();
        let accepted = match &spent {
            Some(spent) => self.store.spend_factor(user.id, spent, now, &used).await?,
            None => false,
        };
        if !accepted {
            self.count_failure(user.id, "wrong_code", purpose).await?;
            return Err(Error::IncorrectCode);
        }
        committed(&used);
        if !used.is_empty() {
            notify(
                &self.outbox,
                user,
                MailKind::BackupCodeUsed,
                &self.config.product_name,
            )
            .await;
        }
        Ok(())
    }

    /// The account's password, confirming a change: refused while the account is locked, and a
    /// wrong one counts towards the lock.
    async fn check_password(
        &self,
        user: &User,
        password: &SecretString,
        purpose: &'static str,
    ) -> Result<(), Error> {
        if user.is_locked(self.now()) {
            return Err(Error::IncorrectPassword);
        }
        let matches = self
            .hasher
            .verify(password, Some(&user.password_hash))
            .await?
            .matches;
        if !matches {
            self.count_failure(user.id, "incorrect_password", purpose)
                .await?;
            return Err(Error::IncorrectPassword);
        }
        Ok(())
    }

    async fn count_failure(
        &self,
        user_id: Uuid,
        reason: &'static str,
        purpose: &'static str,
    ) -> Result<(), Error> {
        let now = self.now();
        let (attempts, lock_until) = (
            self.config.lockout_attempts,
            now + self.config.lockout_duration,
        );
        let failed = new_event(
            now,
            kind::MFA_REAUTH_FAILED,
            Outcome::Failure,
            Some(user_id),
            None,
            json!({"reason": reason, "purpose": purpose}),
        );
        let locked = lock_event(now, user_id, "account", attempts, lock_until);
        let locked_now = self
            .store
            .record_failed_login(user_id, now, attempts, lock_until, &failed, &locked)
            .await?;
        committed(&[failed]);
        if locked_now {
            committed(&[locked]);
        }
        Ok(())
    }

    /// Turns two-factor authentication off (re-authenticated with the password and a factor).
    ///
    /// # Errors
    /// `NotFound`/`Forbidden`, `MfaState` (`mfa_not_enabled`), `IncorrectPassword`,
    /// `IncorrectCode`, `Validation`.
    pub async fn disable(
        &self,
        principal: &Principal,
        user_id: Uuid,
        password: &SecretString,
        factor: &SecondFactor,
    ) -> Result<(), Error> {
        let user = self.own_account(principal, user_id).await?;
        self.reauthenticate(&user, password, factor, "disable")
            .await?;
        let disabled = [self.event(
            kind::MFA_DISABLED,
            user_id,
            Some(principal),
            json!({"by": "self"}),
        )];
        if self
            .store
            .disable_totp(user_id, self.now(), &disabled)
            .await?
        {
            committed(&disabled);
            tracing::info!(%user_id, "two-factor authentication disabled");
            notify(
                &self.outbox,
                &user,
                MailKind::TotpDisabled,
                &self.config.product_name,
            )
            .await;
        }
        Ok(())
    }

    /// Replaces the backup codes (re-authenticated); the old set stops working.
    ///
    /// # Errors
    /// As [`TwoFactor::disable`].
    pub async fn regenerate_backup_codes(
        &self,
        principal: &Principal,
        user_id: Uuid,
        password: &SecretString,
        factor: &SecondFactor,
    ) -> Result<Vec<String>, Error> {
        let user = self.own_account(principal, user_id).await?;
        self.reauthenticate(&user, password, factor, "regenerate_backup_codes")
            .await?;
        let (codes, hashes) = self.new_backup_codes(user_id);
        let regenerated = [self.event(
            kind::MFA_BACKUP_CODES_REGENERATED,
            user_id,
            Some(principal),
            json!({"count": codes.len()}),
        )];
        if !self
            .store
            .replace_backup_codes(user_id, &hashes, self.now(), &regenerated)
            .await?
        {
            return Err(Error::MfaState {
                code: "mfa_not_enabled",
                message: "Two-factor authentication is not enabled.",
            });
        }
        committed(&regenerated);
        notify(
            &self.outbox,
            &user,
            MailKind::BackupCodesRegenerated,
            &self.config.product_name,
        )
        .await;
        Ok(codes)
    }

    /// The account's two-factor state (the holder, or an administrator).
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`.
    pub async fn status(
        &self,
        principal: &Principal,
        user_id: Uuid,
    ) -> Result<TwoFactorStatus, Error> {
        principal.ensure_self_or(user_id, Permission::UsersRead)?;
        if self.store.user_by_id(user_id).await?.is_none() {
            return Err(Error::NotFound);
        }
        let credential = self
            .store
            .totp_credential(user_id)
            .await?
            .filter(|c| c.enabled_at.is_some());
        Ok(TwoFactorStatus {
            enabled: credential.is_some(),
            enabled_at: credential.as_ref().and_then(|c| c.enabled_at),
            backup_codes_remaining: credential.map_or(0, |c| c.backup_codes_remaining),
        })
    }

    /// An administrator (or the CLI, `actor: None`) removes an account's authenticator app and
    /// backup codes, for a user who lost their device. The user is told by mail. Returns
    /// whether two-factor authentication was enabled.
    ///
    /// # Errors
    /// `Forbidden` (not an administrator), `NotFound`.
    pub async fn reset(&self, actor: Option<&Principal>, user_id: Uuid) -> Result<bool, Error> {
        if let Some(actor) = actor {
            self.grants
                .ensure_manages(self.store.as_ref(), actor, user_id)
                .await?;
            // Removing one's own factor needs the password and a code (`disable`): an
            // administrator's access token alone must not strip its own second factor.
            if actor.user_id == user_id {
                return Err(Error::Forbidden);
            }
        }
        let user = self
            .store
            .user_by_id(user_id)
            .await?
            .ok_or(Error::NotFound)?;
        let by = if actor.is_some() { "admin" } else { "cli" };
        let reset = [self.event(kind::MFA_RESET, user_id, actor, json!({"by": by}))];
        let was_enabled = self.store.disable_totp(user_id, self.now(), &reset).await?;
        if was_enabled {
            committed(&reset);
            tracing::warn!(%user_id, by, "two-factor authentication reset");
            notify(
                &self.outbox,
                &user,
                MailKind::MfaReset,
                &self.config.product_name,
            )
            .await;
        }
        Ok(was_enabled)
    }
}

fn already_enabled() -> Error {
    Error::MfaState {
        code: "mfa_already_enabled",
        message: "Two-factor authentication is already enabled; disable it first.",
    }
}

fn setup_required() -> Error {
    Error::MfaState {
        code: "mfa_setup_required",
        message: "Start the setup first: no authenticator app is waiting to be enabled.",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn backup_codes_have_sixty_bits_and_read_back() {
        let code = new_backup_code();
        assert_eq!(code.len(), 14);
        let canonical = canonical_backup_code(&code).unwrap();
        assert_eq!(canonical.len(), 12);
        assert_eq!(
            canonical_backup_code(&code.to_uppercase()),
            Some(canonical.clone())
        );
        assert_eq!(
            canonical_backup_code(&format!(" {} ", canonical.replace('0', "O"))),
            Some(canonical)
        );
        assert_eq!(canonical_backup_code("short"), None);
        assert_eq!(canonical_backup_code("uuuu-uuuu-uuuu"), None);
    }

    #[test]
    fn six_digit_codes_accept_app_spacing_only() {
        assert_eq!(six_digits("123 456").as_deref(), Some("123456"));
        assert_eq!(six_digits("123-456").as_deref(), Some("123456"));
        assert_eq!(six_digits("12345"), None);
        assert_eq!(six_digits("1234567"), None);
        assert_eq!(six_digits("12345a"), None);
        assert_eq!(six_digits("١٢٣٤٥٦"), None);
    }

    #[test]
    fn email_codes_are_six_digits() {
        for _ in 0..100 {
            let code = new_email_code();
            assert_eq!(code.len(), 6);
            assert!(code.bytes().all(|b| b.is_ascii_digit()));
        }
    }

    #[test]
    fn a_code_matches_its_step_and_its_neighbours_only() {
        let secret = [7u8; 20];
        let now = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let app = totp(&secret, None).unwrap();
        let step = now.timestamp() / 30;
        for offset in [-1_i64, 0, 1] {
            let code = app
                .generate(u64::try_from((step + offset) * 30).unwrap())
                .to_string();
            assert_eq!(
                matching_step(&secret, &code, now).unwrap(),
                Some(step + offset)
            );
        }
        let far = app
            .generate(u64::try_from((step + 2) * 30).unwrap())
            .to_string();
        assert_eq!(matching_step(&secret, &far, now).unwrap(), None);
    }

    #[test]
    fn amr_accumulates_without_repeats() {
        let amr = amr_with(&["pwd".to_owned()], Method::Totp);
        assert_eq!(amr, ["pwd", "otp"]);
        assert_eq!(amr_with(&amr, Method::BackupCode), ["pwd", "otp"]);
    }
}
