//! Security questions (seed 004 `/api/security-questions`, and recovery by questions under
//! `/api/auth`).
//!
//! - The catalogue is managed by holders of `security_questions:manage`; anyone may read it.
//! - An account holder sets answers (normalised, then hashed with Argon2id on the hashing pool)
//!   to up to [`MAX_ANSWERS`] active questions. Setting or removing answers changes how the
//!   account is recovered, so the holder confirms it with the current password (a stolen access
//!   token alone cannot set answers the owner does not know and so lock the owner out of
//!   recovery), and the account's address gets a notice. Someone with `users:manage` (over an
//!   account holding nothing they lack) acts without the password.
//! - Questions are **never sufficient alone** (ASVS v4 2.5.2): answering all of an account's
//!   questions (at least [`MIN_ANSWERS`]) yields a short-lived, single-use `recovery_proof` bound
//!   to the account, and for an account with questions a password reset needs both the emailed
//!   token and that proof ([`Auth::reset_password`]).
//! - Recovery reveals nothing: an unknown address, or an account without questions, is shown
//!   decoy questions from the active catalogue, chosen by a keyed hash of the address (the same
//!   on every request and every instance), and verifying them does the same hashing and answers
//!   like wrong answers. Wrong answers count on their own counter: [`LOCK_ATTEMPTS`] lock
//!   question-based recovery for [`LOCK_MINUTES`]; a locked account answers like wrong answers.
//!   Attempts are also limited per address and client address ([`RecoveryLimiter`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use chrono::Duration;
use secrecy::SecretString;
use serde_json::json;
use uuid::Uuid;

use crate::crypto::{random_token, token_hash};
use crate::domain::audit::{Outcome, kind};
use crate::domain::rbac::Permission;
use crate::domain::security_question::{
    LOCK_ATTEMPTS, LOCK_MINUTES, MAX_ANSWERS, MIN_ANSWERS, PROOF_TTL_MINUTES, SecurityAnswer,
    SecurityQuestion, SetAnswerOutcome, answer_for_verification, choose_decoys, decoy_count,
    parse_answer, parse_question_text, question_key,
};
use crate::domain::{Email, EmailPolicy, User};
use crate::error::Error;
use crate::flows::audit::committed;
use crate::mail::MailKind;
use crate::service::{Auth, ClientContext, Principal};

/// A question as recovery shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuestionPrompt {
    /// The question's id.
    pub id: Uuid,
    /// Its text.
    pub text: String,
}

/// One answer given during recovery.
#[derive(Debug, Clone)]
pub struct GivenAnswer {
    /// The question answered.
    pub question_id: Uuid,
    /// The answer as typed.
    pub answer: SecretString,
}

/// A fixed-window counter per key: at most `limit` attempts per `window`.
struct Window {
    started: Instant,
    used: u32,
}

/// Attempts per address and client address, on top of the per-client-address buckets of the
/// web layer: an address cannot be tried from one client faster than this, known or not.
/// (Per instance; the question lock, in the store, is what all instances share.)
pub struct RecoveryLimiter {
    windows: moka::sync::Cache<String, Arc<Mutex<Window>>>,
    limit: u32,
    window: StdDuration,
}

impl RecoveryLimiter {
    fn new(limit: u32, window: StdDuration) -> Self {
        Self {
            windows: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(window)
                .build(),
            limit,
            window,
        }
    }

    fn take(&self, key: String) -> Result<(), Error> {
        let now = Instant::now();
        let cell = self.windows.get_with(key, || {
            Arc::new(Mutex::new(Window {
                started: now,
                used: 0,
            }))
        });
        let mut w = cell
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if now.saturating_duration_since(w.started) >= self.window {
            w.started = now;
            w.used = 0;
        }
        if w.used >= self.limit {
            let wait = self
                .window
                .saturating_sub(now.saturating_duration_since(w.started));
            return Err(Error::RateLimited {
                retry_after_secs: wait.as_secs().max(1),
            });
        }
        w.used += 1;
        Ok(())
    }
}

/// Recovery attempts (verifications) per address and client address per window.
pub const VERIFY_LIMIT: u32 = 10;
/// Question look-ups per address and client address per window.
pub const LOOKUP_LIMIT: u32 = 30;
/// The window of both limits.
pub const LIMIT_WINDOW: StdDuration = StdDuration::from_secs(15 * 60);

/// The security-questions service.
pub struct SecurityQuestions {
    auth: Arc<Auth>,
    lookups: RecoveryLimiter,
    verifications: RecoveryLimiter,
}

impl std::fmt::Debug for SecurityQuestions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecurityQuestions").finish_non_exhaustive()
    }
}

/// Who asks for a change to an account's answers.
enum Changer {
    /// The account holder (password confirmed).
    Holder,
    /// Someone with `users:manage`.
    Manager,
}

impl SecurityQuestions {
    /// The service over the sign-in service's store, hasher, keys and mail.
    #[must_use]
    pub fn new(auth: Arc<Auth>) -> Self {
        Self {
            auth,
            lookups: RecoveryLimiter::new(LOOKUP_LIMIT, LIMIT_WINDOW),
            verifications: RecoveryLimiter::new(VERIFY_LIMIT, LIMIT_WINDOW),
        }
    }

    // ---- The catalogue -------------------------------------------------------------------

    /// The catalogue, ordered by text; only active questions when `active_only`.
    ///
    /// # Errors
    /// On store failure.
    pub async fn list(&self, active_only: bool) -> Result<Vec<SecurityQuestion>, Error> {
        Ok(self.auth.store.security_questions(active_only).await?)
    }

    /// One question.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn get(&self, id: Uuid) -> Result<SecurityQuestion, Error> {
        self.auth
            .store
            .security_question(id)
            .await?
            .ok_or(Error::NotFound)
    }

    /// Refuses a text equal to another question's but for case, accents and spacing.
    async fn ensure_unique(&self, text: &str, except: Option<Uuid>) -> Result<(), Error> {
        let key = question_key(text);
        let taken = self
            .auth
            .store
            .security_questions(false)
            .await?
            .into_iter()
            .any(|q| Some(q.id) != except && question_key(&q.text) == key);
        if taken {
            return Err(Error::Conflict { field: "text" });
        }
        Ok(())
    }

    /// Adds a question (needs `security_questions:manage`).
    ///
    /// # Errors
    /// `Forbidden`, `Validation` (`invalid_question`), `Conflict { field: "text" }`.
    pub async fn create(
        &self,
        p: &Principal,
        text: &str,
        active: Option<bool>,
    ) -> Result<SecurityQuestion, Error> {
        p.ensure(Permission::SecurityQuestionsManage)?;
        let text = parse_question_text(text)?;
        self.ensure_unique(&text, None).await?;
        let now = self.auth.now();
        let question = SecurityQuestion {
            id: Uuid::now_v7(),
            text,
            active: active.unwrap_or(true),
            created_at: now,
            updated_at: now,
        };
        let events = [self.auth.event(
            kind::SECURITY_QUESTION_CREATED,
            Outcome::Success,
            None,
            Some(p),
            json!({"question_id": question.id}),
        )];
        let created = self
            .auth
            .store
            .create_security_question(&question, &events)
            .await?;
        committed(&events);
        Ok(created)
    }

    /// Changes a question's text and/or state (needs `security_questions:manage`).
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`, `Validation`, `Conflict { field: "text" }`.
    pub async fn update(
        &self,
        p: &Principal,
        id: Uuid,
        text: Option<&str>,
        active: Option<bool>,
    ) -> Result<SecurityQuestion, Error> {
        p.ensure(Permission::SecurityQuestionsManage)?;
        let text = text.map(parse_question_text).transpose()?;
        if let Some(text) = &text {
            self.ensure_unique(text, Some(id)).await?;
        }
        let event_type = if active == Some(false) && text.is_none() {
            kind::SECURITY_QUESTION_DEACTIVATED
        } else {
            kind::SECURITY_QUESTION_UPDATED
        };
        let events = [self.auth.event(
            event_type,
            Outcome::Success,
            None,
            Some(p),
            json!({"question_id": id, "text_changed": text.is_some(), "active": active}),
        )];
        let before = self.get(id).await?;
        let updated = self
            .auth
            .store
            .update_security_question(id, text.as_deref(), active, self.auth.now(), &events)
            .await?;
        if updated != before {
            committed(&events);
        }
        Ok(updated)
    }

    /// Deactivates a question: no longer offered nor asked; its answers stay.
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`.
    pub async fn deactivate(&self, p: &Principal, id: Uuid) -> Result<SecurityQuestion, Error> {
        self.update(p, id, None, Some(false)).await
    }

    /// Deletes a question and every answer to it (needs `security_questions:manage`).
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`.
    pub async fn delete(&self, p: &Principal, id: Uuid) -> Result<SecurityQuestion, Error> {
        p.ensure(Permission::SecurityQuestionsManage)?;
        let events = [self.auth.event(
            kind::SECURITY_QUESTION_DELETED,
            Outcome::Success,
            None,
            Some(p),
            json!({"question_id": id}),
        )];
        let deleted = self
            .auth
            .store
            .delete_security_question(id, &events)
            .await?;
        committed(&events);
        Ok(deleted)
    }

    // ---- A user's answers ----------------------------------------------------------------

    /// Checks who may change `user_id`'s answers: the holder with the current password, or a
    /// manager of the account without it.
    async fn authorise_change(
        &self,
        p: &Principal,
        user_id: Uuid,
        password: Option<&SecretString>,
        event_type: &'static str,
    ) -> Result<(User, Changer), Error> {
        self.auth
            .grants
            .ensure_manages(self.auth.store.as_ref(), p, user_id)
            .await?;
        let user = self
            .auth
            .store
            .user_by_id(user_id)
            .await?
            .ok_or(Error::NotFound)?;
        if p.user_id == user_id {
            self.auth
                .verify_current_password(&user, password, event_type)
                .await?;
            Ok((user, Changer::Holder))
        } else {
            Ok((user, Changer::Manager))
        }
    }

    /// The account's answers (which questions; never the answers).
    ///
    /// # Errors
    /// `Forbidden`, `NotFound`.
    pub async fn answers(
        &self,
        p: &Principal,
        user_id: Uuid,
    ) -> Result<Vec<SecurityAnswer>, Error> {
        self.auth
            .grants
            .ensure_manages(self.auth.store.as_ref(), p, user_id)
            .await?;
        self.auth
            .store
            .user_by_id(user_id)
            .await?
            .ok_or(Error::NotFound)?;
        Ok(self.auth.store.security_answers(user_id).await?)
    }

    /// Sets (or replaces) the answer to an active question.
    ///
    /// # Errors
    /// `Forbidden`, `NotFound` (account or question), `Validation` (`invalid_answer`,
    /// `question_inactive`, `too_many_answers`), `IncorrectPassword`, `Overloaded`.
    pub async fn set_answer(
        &self,
        p: &Principal,
        user_id: Uuid,
        question_id: Uuid,
        answer: &SecretString,
        password: Option<&SecretString>,
    ) -> Result<SecurityAnswer, Error> {
        use secrecy::ExposeSecret as _;
        // Bad input is refused before the password is checked: a typo costs no attempt.
        let normalised = SecretString::from(parse_answer(answer.expose_secret())?);
        let question = self.get(question_id).await?;
        if !question.active {
            return Err(Error::validation(
                "question_id",
                "question_inactive",
                "This question is no longer offered.",
            ));
        }
        let (user, changer) = self
            .authorise_change(p, user_id, password, kind::SECURITY_ANSWERS_SET)
            .await?;
        let hash = self.auth.hasher.hash_answer(&normalised).await?;
        let by = match changer {
            Changer::Holder => "self",
            Changer::Manager => "admin",
        };
        let events = [self.auth.event(
            kind::SECURITY_ANSWERS_SET,
            Outcome::Success,
            Some(user_id),
            Some(p),
            json!({"question_id": question_id, "by": by}),
        )];
        match self
            .auth
            .store
            .set_security_answer(
                user_id,
                question_id,
                &hash,
                MAX_ANSWERS,
                self.auth.now(),
                &events,
            )
            .await?
        {
            SetAnswerOutcome::Added | SetAnswerOutcome::Replaced => {}
            SetAnswerOutcome::TooMany => {
                return Err(Error::validation(
                    "question_id",
                    "too_many_answers",
                    format!("An account keeps at most {MAX_ANSWERS} answers: remove one first."),
                ));
            }
            SetAnswerOutcome::QuestionUnavailable => return Err(Error::NotFound),
        }
        committed(&events);
        self.notify(&user, MailKind::SecurityAnswersSet).await;
        self.auth
            .store
            .security_answers(user_id)
            .await?
            .into_iter()
            .find(|a| a.question_id == question_id)
            .ok_or(Error::NotFound)
    }

    /// Removes one answer (`question_id`) or all. Returns how many went.
    ///
    /// # Errors
    /// `Forbidden`, `NotFound` (account, or no answer to that question), `IncorrectPassword`.
    pub async fn remove_answers(
        &self,
        p: &Principal,
        user_id: Uuid,
        question_id: Option<Uuid>,
        password: Option<&SecretString>,
    ) -> Result<u64, Error> {
        let (user, changer) = self
            .authorise_change(p, user_id, password, kind::SECURITY_ANSWERS_REMOVED)
            .await?;
        let by = match changer {
            Changer::Holder => "self",
            Changer::Manager => "admin",
        };
        let details = match question_id {
            Some(q) => json!({"question_id": q, "by": by}),
            None => json!({"all": true, "by": by}),
        };
        let events = [self.auth.event(
            kind::SECURITY_ANSWERS_REMOVED,
            Outcome::Success,
            Some(user_id),
            Some(p),
            details,
        )];
        let removed = self
            .auth
            .store
            .delete_security_answers(user_id, question_id, &events)
            .await?;
        if removed == 0 {
            return if question_id.is_some() {
                Err(Error::NotFound)
            } else {
                Ok(0)
            };
        }
        committed(&events);
        self.notify(&user, MailKind::SecurityAnswersRemoved).await;
        Ok(removed)
    }

    /// Checks one answer of a signed-in account (seed 004 `…/{question_id}/verify`). A wrong
    /// answer counts towards the question lock; a locked account's answer is never valid; a
    /// right one does not clear the count (one known answer must not buy unlimited guesses
    /// at another).
    ///
    /// # Errors
    /// `Forbidden`, `NotFound` (no answer to that question), `Overloaded`.
    pub async fn check_answer(
        &self,
        p: &Principal,
        user_id: Uuid,
        question_id: Uuid,
        answer: &SecretString,
    ) -> Result<bool, Error> {
        use secrecy::ExposeSecret as _;
        p.ensure_self_or(user_id, Permission::UsersManage)?;
        let stored = self
            .auth
            .store
            .stored_answers(user_id)
            .await?
            .into_iter()
            .find(|a| a.question_id == question_id)
            .ok_or(Error::NotFound)?;
        let given = SecretString::from(answer_for_verification(answer.expose_secret()));
        let matches = self
            .auth
            .hasher
            .verify_answers(vec![(given, Some(stored.answer_hash))])
            .await?
            .first()
            .copied()
            .unwrap_or(false);
        let now = self.auth.now();
        let locked = self.auth.store.question_lock(user_id).await?.is_locked(now);
        if matches && !locked {
            self.auth
                .record(
                    kind::SECURITY_ANSWERS_VERIFIED,
                    Outcome::Success,
                    Some(user_id),
                    Some(p),
                    json!({"purpose": "check", "question_id": question_id}),
                )
                .await;
            return Ok(true);
        }
        if locked {
            self.auth
                .record(
                    kind::SECURITY_ANSWERS_VERIFIED,
                    Outcome::Failure,
                    Some(user_id),
                    Some(p),
                    json!({"purpose": "check", "reason": "locked"}),
                )
                .await;
        } else {
            self.count_failure(user_id, "check").await?;
        }
        Ok(false)
    }

    /// Counts wrong answers of `user_id` (and locks at the limit), with their events.
    async fn count_failure(&self, user_id: Uuid, purpose: &'static str) -> Result<(), Error> {
        let now = self.auth.now();
        let lock_until = now + Duration::minutes(LOCK_MINUTES);
        let failed = self.auth.event(
            kind::SECURITY_ANSWERS_VERIFIED,
            Outcome::Failure,
            Some(user_id),
            None,
            json!({"purpose": purpose, "reason": "incorrect_answers"}),
        );
        let locked = self.auth.event(
            kind::RECOVERY_QUESTIONS_LOCKED,
            Outcome::Success,
            Some(user_id),
            None,
            json!({"failed_attempts": LOCK_ATTEMPTS, "locked_until": lock_until}),
        );
        let locked_now = self
            .auth
            .store
            .record_failed_answers(user_id, now, LOCK_ATTEMPTS, lock_until, &failed, &locked)
            .await?;
        committed(&[failed]);
        if locked_now {
            committed(&[locked]);
        }
        Ok(())
    }

    async fn notify(&self, user: &User, kind: MailKind<'_>) {
        let queued = self
            .auth
            .outbox
            .queue_for(user, kind, &self.auth.config.product_name)
            .await;
        if let Err(e) = queued {
            tracing::warn!(user_id = %user.id, error = %e, "security-answers notice not queued");
        }
    }

    // ---- Recovery ------------------------------------------------------------------------

    fn parse_email(email: &str) -> Result<Email, Error> {
        Email::parse(
            email,
            EmailPolicy {
                allow_unicode: true,
            },
        )
    }

    /// The limiter key of `email` from the current client: a keyed hash, so the limiter's
    /// memory holds no addresses.
    fn limit_key(&self, email: &Email) -> String {
        let ip = ClientContext::current().ip.clone().unwrap_or_default();
        crate::crypto::hex(
            &self
                .auth
                .master
                .sign(&[
                    b"security-questions limit v1",
                    email.as_str().as_bytes(),
                    ip.as_bytes(),
                ])
                .as_ref()[..16],
        )
    }

    /// What recovery asks of `email`: the account's answered active questions when it has at
    /// least [`MIN_ANSWERS`], otherwise decoys. Each as (question, stored hash or `None`).
    /// The same statements run whichever it is.
    async fn expected(
        &self,
        email: &Email,
    ) -> Result<(Option<User>, Vec<(QuestionPrompt, Option<String>)>), Error> {
        // Like forgot-password: the account's own address or one of its verified recovery
        // addresses, both looked up whichever it is.
        let (primary, recovery) = futures::try_join!(
            self.auth.store.user_by_email(email.as_str()),
            self.auth
                .store
                .verified_recovery_email_owner(email.as_str()),
        )?;
        let user = match (primary, recovery) {
            (Some(user), _) => Some(user),
            (None, Some(owner)) => self.auth.store.user_by_id(owner).await?,
            (None, None) => None,
        }
        .filter(|u| u.is_active);
        let owner = user.as_ref().map_or(Uuid::nil(), |u| u.id);
        let (stored, catalogue) = futures::try_join!(
            self.auth.store.stored_answers(owner),
            self.auth.store.security_questions(true)
        )?;
        if user.is_some() && stored.len() >= MIN_ANSWERS {
            let real = stored
                .into_iter()
                .map(|a| {
                    (
                        QuestionPrompt {
                            id: a.question_id,
                            text: a.question,
                        },
                        Some(a.answer_hash),
                    )
                })
                .collect();
            return Ok((user, real));
        }
        let address = email.as_str().as_bytes();
        let count_tag = self
            .auth
            .master
            .sign(&[b"security-questions decoy count v1", address]);
        let count = decoy_count(count_tag.as_ref()[0], catalogue.len());
        let decoys = choose_decoys(
            &catalogue,
            |q| q.id,
            |id| {
                self.auth
                    .master
                    .sign(&[b"security-questions decoy v1", address, id.as_bytes()])
                    .as_ref()
                    .to_vec()
            },
            count,
        );
        let decoys = decoys
            .into_iter()
            .map(|q| {
                (
                    QuestionPrompt {
                        id: q.id,
                        text: q.text,
                    },
                    None,
                )
            })
            .collect();
        // An account without (enough) questions is shown decoys like an unknown address.
        Ok((None, decoys))
    }

    /// `POST /api/auth/security-questions`: the questions recovery asks of `email` (decoys for
    /// an unknown address or an account without questions).
    ///
    /// # Errors
    /// `Validation` (`invalid_email`), `RateLimited`.
    pub async fn recovery_questions(&self, email: &str) -> Result<Vec<QuestionPrompt>, Error> {
        let email = Self::parse_email(email)?;
        self.lookups.take(self.limit_key(&email))?;
        let (_, expected) = self.expected(&email).await?;
        Ok(expected.into_iter().map(|(q, _)| q).collect())
    }

    /// `POST /api/auth/verify-security-question`: checks answers to all of the questions of
    /// `email` and, when every one is right (and the account is not locked), returns a
    /// recovery proof (valid [`PROOF_TTL_MINUTES`] minutes, single use) for the password reset.
    ///
    /// # Errors
    /// `Validation` (`invalid_email`, `invalid_answers_format`), `RateLimited`,
    /// `InvalidAnswers` (wrong, missing or extra answers; decoys; a locked account), `Overloaded`.
    pub async fn verify_recovery(
        &self,
        email: &str,
        answers: &[GivenAnswer],
    ) -> Result<String, Error> {
        use secrecy::ExposeSecret as _;
        let email = Self::parse_email(email)?;
        let mut seen = HashSet::new();
        if answers.is_empty()
            || answers.len() > MAX_ANSWERS
            || !answers.iter().all(|a| seen.insert(a.question_id))
        {
            return Err(Error::validation(
                "answers",
                "invalid_answers_format",
                format!("Give one answer per question, 1 to {MAX_ANSWERS}, each question once."),
            ));
        }
        self.verifications.take(self.limit_key(&email))?;
        let (user, expected) = self.expected(&email).await?;
        let given: HashMap<Uuid, &SecretString> =
            answers.iter().map(|a| (a.question_id, &a.answer)).collect();
        let same_questions = given.len() == expected.len()
            && expected.iter().all(|(q, _)| given.contains_key(&q.id));
        // One hash per expected question, whatever was given: the work depends only on how
        // many questions the address is asked, which the questions endpoint shows anyway.
        let pairs = expected
            .iter()
            .map(|(q, hash)| {
                let typed = given
                    .get(&q.id)
                    .map_or_else(String::new, |a| answer_for_verification(a.expose_secret()));
                (SecretString::from(typed), hash.clone())
            })
            .collect();
        let matches = self.auth.hasher.verify_answers(pairs).await?;
        let owner = user.as_ref().map_or(Uuid::nil(), |u| u.id);
        let now = self.auth.now();
        let lock = self.auth.store.question_lock(owner).await?;
        let Some(user) = user else {
            // Unknown address or no questions: one write, as a wrong answer costs.
            self.auth
                .record(
                    kind::SECURITY_ANSWERS_VERIFIED,
                    Outcome::Failure,
                    None,
                    None,
                    json!({"purpose": "recovery", "reason": "unknown_address"}),
                )
                .await;
            return Err(Error::InvalidAnswers);
        };
        let all_right = same_questions && matches.iter().all(|m| *m);
        if lock.is_locked(now) {
            self.auth
                .record(
                    kind::SECURITY_ANSWERS_VERIFIED,
                    Outcome::Failure,
                    Some(user.id),
                    None,
                    json!({"purpose": "recovery", "reason": "locked"}),
                )
                .await;
            return Err(Error::InvalidAnswers);
        }
        if !all_right {
            self.count_failure(user.id, "recovery").await?;
            return Err(Error::InvalidAnswers);
        }
        let proof = random_token::<24>();
        let events = [self.auth.event(
            kind::SECURITY_ANSWERS_VERIFIED,
            Outcome::Success,
            Some(user.id),
            None,
            json!({"purpose": "recovery"}),
        )];
        let issued = self
            .auth
            .store
            .issue_recovery_proof(
                user.id,
                &token_hash(&proof),
                now + Duration::minutes(PROOF_TTL_MINUTES),
                now,
                &events,
            )
            .await?;
        if !issued {
            // Locked (or disabled) meanwhile.
            return Err(Error::InvalidAnswers);
        }
        committed(&events);
        tracing::info!(user_id = %user.id, "recovery proof issued");
        Ok(proof)
    }

    /// The questions the reset page asks for the account of a live reset token, or `None`
    /// when it needs none (no questions, or an unknown token: the reset itself refuses that).
    ///
    /// # Errors
    /// On store failure.
    pub async fn questions_for_reset(
        &self,
        token: &str,
    ) -> Result<Option<(Email, Vec<QuestionPrompt>)>, Error> {
        let Some(owner) = self.auth.reset_token_user(token).await? else {
            return Ok(None);
        };
        let stored = self.auth.store.stored_answers(owner.id).await?;
        if stored.len() < MIN_ANSWERS {
            return Ok(None);
        }
        let email = Self::parse_email(&owner.email)?;
        Ok(Some((
            email,
            stored
                .into_iter()
                .map(|a| QuestionPrompt {
                    id: a.question_id,
                    text: a.question,
                })
                .collect(),
        )))
    }
}
