//! `/api/security-questions` (seed 004): the catalogue (administration needs
//! `security_questions:manage`, reading is public) and a user's answers (yourself, or
//! `users:manage`); and recovery by questions, `POST /api/auth/security-questions` and
//! `POST /api/auth/verify-security-question`.
//!
//! An addition to seed 004's shape: setting or removing your own answers needs your current
//! `password` in the body, because it changes how the account is recovered. Answers alone never
//! reset a password: they yield a `recovery_proof` that `reset-password` needs *besides* the
//! emailed token (see `porteiro_core::flows::security_questions`).

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use porteiro_core::Error;
use porteiro_core::domain::security_question::{
    PROOF_TTL_MINUTES, SecurityAnswer, SecurityQuestion,
};
use porteiro_core::flows::security_questions::{GivenAnswer, QuestionPrompt};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{AppJson, AppPath, AppQuery, Bearer, RequirePermission, perm};
use crate::state::AppState;
use crate::views::{Envelope, Json, ok, ok_with};

/// A question of the catalogue (seed 004 `SecurityQuestion`).
#[derive(Debug, Serialize, ToSchema)]
pub struct SecurityQuestionView {
    /// Identifier.
    pub id: Uuid,
    /// The question.
    pub text: String,
    /// Offered for new answers and asked during recovery.
    pub active: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl From<SecurityQuestion> for SecurityQuestionView {
    fn from(q: SecurityQuestion) -> Self {
        Self {
            id: q.id,
            text: q.text,
            active: q.active,
            created_at: q.created_at,
            updated_at: q.updated_at,
        }
    }
}

/// One of a user's answers (seed 004 `UserSecurityAnswer`, without `answer_hash`: answers and
/// their hashes are never returned).
#[derive(Debug, Serialize, ToSchema)]
pub struct SecurityAnswerView {
    /// Identifier of the answer: an account has one answer per question, so it is the
    /// question's id.
    pub id: Uuid,
    /// The account.
    pub user_id: Uuid,
    /// The question answered.
    pub question_id: Uuid,
    /// Its text.
    pub question: String,
    /// Whether the question is active (only those are asked during recovery).
    pub active: bool,
    /// When the answer was first set.
    pub created_at: DateTime<Utc>,
    /// When it was last replaced.
    pub updated_at: DateTime<Utc>,
}

fn answer_view(user_id: Uuid, a: SecurityAnswer) -> SecurityAnswerView {
    SecurityAnswerView {
        id: a.question_id,
        user_id,
        question_id: a.question_id,
        question: a.question,
        active: a.active,
        created_at: a.created_at,
        updated_at: a.updated_at,
    }
}

/// A new question.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateQuestion {
    /// 5–200 characters, no control or invisible characters; unique (ignoring case, accents
    /// and spacing).
    #[schema(example = "What was the name of your first pet?")]
    #[serde(alias = "question")]
    pub text: String,
    /// Default true.
    pub active: Option<bool>,
}

/// A change; absent fields are unchanged.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateQuestion {
    /// New text.
    #[serde(alias = "question")]
    pub text: Option<String>,
    /// New state.
    pub active: Option<bool>,
}

/// Filter of the catalogue.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    /// `true`: only active questions (the ones offered and asked).
    pub active: Option<bool>,
}

/// An answer to set.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SetAnswer {
    /// The answer: compared ignoring case, accents and spacing; 2–100 characters.
    #[schema(value_type = String, format = Password)]
    pub answer: SecretString,
    /// Your current password (an addition to seed 004: needed for your own account, not when
    /// someone with `users:manage` sets another's).
    #[schema(value_type = Option<String>, format = Password)]
    #[serde(alias = "current_password")]
    pub password: Option<SecretString>,
}

/// An answer to check.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CheckAnswer {
    /// The answer.
    #[schema(value_type = String, format = Password)]
    pub answer: SecretString,
}

/// The result of a check.
#[derive(Debug, Serialize, ToSchema)]
pub struct AnswerCheck {
    /// The question.
    pub question_id: Uuid,
    /// Whether the answer is right (never while question-based recovery is locked).
    pub valid: bool,
}

/// Delete body: optional; your own answers need your password.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct RemoveAnswers {
    /// Your current password.
    #[schema(value_type = Option<String>, format = Password)]
    #[serde(alias = "current_password")]
    pub password: Option<SecretString>,
}

/// How many answers went.
#[derive(Debug, Serialize, ToSchema)]
pub struct Removed {
    /// Answers removed.
    pub removed: u64,
}

/// Which account's questions to show.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RecoveryQuestionsRequest {
    /// The account's address.
    pub email: String,
}

/// A question as recovery asks it.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuestionPromptView {
    /// The question's id (send it back with the answer).
    pub id: Uuid,
    /// The question.
    pub text: String,
}

impl From<QuestionPrompt> for QuestionPromptView {
    fn from(q: QuestionPrompt) -> Self {
        Self {
            id: q.id,
            text: q.text,
        }
    }
}

/// One answer during recovery.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RecoveryAnswer {
    /// The question.
    pub question_id: Uuid,
    /// The answer.
    #[schema(value_type = String, format = Password)]
    pub answer: SecretString,
}

/// Answers to every question of an account.
#[derive(Debug, Deserialize, ToSchema)]
pub struct VerifyRecoveryRequest {
    /// The account's address.
    pub email: String,
    /// One answer per question asked.
    pub answers: Vec<RecoveryAnswer>,
}

/// Proof that the account's questions were answered.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecoveryProofView {
    /// Send it with the emailed token to `reset-password` (`recovery_proof`). Single use.
    pub recovery_proof: String,
    /// Seconds it stays valid.
    pub expires_in: i64,
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get_one))
        .routes(routes!(create))
        .routes(routes!(update, delete))
        .routes(routes!(deactivate))
        .routes(routes!(set_answer, remove_answer))
        .routes(routes!(list_answers, remove_all_answers))
        .routes(routes!(check_answer))
        .routes(routes!(recovery_questions))
        .routes(routes!(verify_recovery))
}

type Manager = RequirePermission<perm::SecurityQuestionsManage>;
type One = ApiResult<Json<Envelope<SecurityQuestionView>>>;

/// The catalogue, by text (public). `?active=true`: only active questions.
#[utoipa::path(get, path = "/api/security-questions", tag = "security-questions", params(ListQuery),
    responses((status = 200, body = Envelope<Vec<SecurityQuestionView>>), (status = 400, body = ErrorBody)))]
async fn list(
    State(s): State<AppState>,
    AppQuery(q): AppQuery<ListQuery>,
) -> ApiResult<Json<Envelope<Vec<SecurityQuestionView>>>> {
    let questions = s.security_questions.list(q.active.unwrap_or(false)).await?;
    Ok(ok(questions.into_iter().map(Into::into).collect()))
}

/// One question (public).
#[utoipa::path(get, path = "/api/security-questions/{id}", tag = "security-questions", params(("id" = Uuid, Path)),
    responses((status = 200, body = Envelope<SecurityQuestionView>), (status = 404, body = ErrorBody)))]
async fn get_one(State(s): State<AppState>, AppPath(id): AppPath<Uuid>) -> One {
    Ok(ok(s.security_questions.get(id).await?.into()))
}

/// Add a question (needs `security_questions:manage`).
#[utoipa::path(post, path = "/api/security-questions/admin", tag = "security-questions", request_body = CreateQuestion, security(("bearer" = [])),
    responses((status = 201, body = Envelope<SecurityQuestionView>), (status = 400, body = ErrorBody, description = "`invalid_question`"),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody, description = "`question_taken`")))]
async fn create(
    State(s): State<AppState>,
    RequirePermission(p, _): Manager,
    AppJson(req): AppJson<CreateQuestion>,
) -> ApiResult<(StatusCode, Json<Envelope<SecurityQuestionView>>)> {
    let created = s
        .security_questions
        .create(&p, &req.text, req.active)
        .await?;
    Ok((StatusCode::CREATED, ok_with("Created.", created.into())))
}

/// Change a question's text or state (needs `security_questions:manage`).
#[utoipa::path(put, path = "/api/security-questions/admin/{id}", tag = "security-questions", params(("id" = Uuid, Path)), request_body = UpdateQuestion, security(("bearer" = [])),
    responses((status = 200, body = Envelope<SecurityQuestionView>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn update(
    State(s): State<AppState>,
    RequirePermission(p, _): Manager,
    AppPath(id): AppPath<Uuid>,
    AppJson(req): AppJson<UpdateQuestion>,
) -> One {
    let updated = s
        .security_questions
        .update(&p, id, req.text.as_deref(), req.active)
        .await?;
    Ok(ok_with("Updated.", updated.into()))
}

/// Delete a question and every answer to it (needs `security_questions:manage`).
#[utoipa::path(delete, path = "/api/security-questions/admin/{id}", tag = "security-questions", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = Envelope<SecurityQuestionView>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete(
    State(s): State<AppState>,
    RequirePermission(p, _): Manager,
    AppPath(id): AppPath<Uuid>,
) -> One {
    Ok(ok_with(
        "Deleted.",
        s.security_questions.delete(&p, id).await?.into(),
    ))
}

/// Deactivate a question: no longer offered nor asked; answers stay (needs
/// `security_questions:manage`).
#[utoipa::path(put, path = "/api/security-questions/admin/{id}/deactivate", tag = "security-questions", params(("id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = Envelope<SecurityQuestionView>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn deactivate(
    State(s): State<AppState>,
    RequirePermission(p, _): Manager,
    AppPath(id): AppPath<Uuid>,
) -> One {
    Ok(ok_with(
        "Deactivated.",
        s.security_questions.deactivate(&p, id).await?.into(),
    ))
}

/// Set (or replace) your answer to an active question: yourself with your current `password`,
/// or `users:manage`. At most 5 answers; recovery uses them from 2 on. The account's address is
/// told.
#[utoipa::path(post, path = "/api/security-questions/users/{user_id}/security-questions/{question_id}/answers", tag = "security-questions",
    params(("user_id" = Uuid, Path), ("question_id" = Uuid, Path)), request_body = SetAnswer, security(("bearer" = [])),
    responses((status = 200, body = Envelope<SecurityAnswerView>),
              (status = 400, body = ErrorBody, description = "`invalid_answer`, `question_inactive`, `too_many_answers`"),
              (status = 403, body = ErrorBody, description = "`forbidden`, `incorrect_password`"), (status = 404, body = ErrorBody)))]
async fn set_answer(
    State(s): State<AppState>,
    Bearer(p): Bearer,
    AppPath((user_id, question_id)): AppPath<(Uuid, Uuid)>,
    AppJson(req): AppJson<SetAnswer>,
) -> ApiResult<Json<Envelope<SecurityAnswerView>>> {
    let answer = s
        .security_questions
        .set_answer(&p, user_id, question_id, &req.answer, req.password.as_ref())
        .await?;
    Ok(ok_with("Answer saved.", answer_view(user_id, answer)))
}

/// The optional JSON body of a removal.
fn removal_body(body: &[u8]) -> Result<RemoveAnswers, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(RemoveAnswers::default());
    }
    serde_json::from_slice(body).map_err(|_| {
        Error::validation(
            "password",
            "invalid_json",
            "The body must be JSON with an optional `password`.",
        )
    })
}

/// Remove your answer to one question: yourself with `{"password"}`, or `users:manage`.
#[utoipa::path(delete, path = "/api/security-questions/users/{user_id}/security-questions/{question_id}/answers", tag = "security-questions",
    params(("user_id" = Uuid, Path), ("question_id" = Uuid, Path)), request_body(content = RemoveAnswers, description = "`password` for your own account"),
    security(("bearer" = [])),
    responses((status = 200, body = Envelope<Removed>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn remove_answer(
    State(s): State<AppState>,
    Bearer(p): Bearer,
    AppPath((user_id, question_id)): AppPath<(Uuid, Uuid)>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Envelope<Removed>>> {
    let req = removal_body(&body)?;
    let removed = s
        .security_questions
        .remove_answers(&p, user_id, Some(question_id), req.password.as_ref())
        .await?;
    Ok(ok_with("Answer removed.", Removed { removed }))
}

/// Which questions you answered (never the answers): yourself, or `users:manage`.
#[utoipa::path(get, path = "/api/security-questions/users/{user_id}/security-questions/answers", tag = "security-questions",
    params(("user_id" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, body = Envelope<Vec<SecurityAnswerView>>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_answers(
    State(s): State<AppState>,
    Bearer(p): Bearer,
    AppPath(user_id): AppPath<Uuid>,
) -> ApiResult<Json<Envelope<Vec<SecurityAnswerView>>>> {
    let answers = s.security_questions.answers(&p, user_id).await?;
    Ok(ok(answers
        .into_iter()
        .map(|a| answer_view(user_id, a))
        .collect()))
}

/// Remove all your answers: yourself with `{"password"}`, or `users:manage`.
#[utoipa::path(delete, path = "/api/security-questions/users/{user_id}/security-questions/answers", tag = "security-questions",
    params(("user_id" = Uuid, Path)), request_body(content = RemoveAnswers, description = "`password` for your own account"),
    security(("bearer" = [])),
    responses((status = 200, body = Envelope<Removed>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn remove_all_answers(
    State(s): State<AppState>,
    Bearer(p): Bearer,
    AppPath(user_id): AppPath<Uuid>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Envelope<Removed>>> {
    let req = removal_body(&body)?;
    let removed = s
        .security_questions
        .remove_answers(&p, user_id, None, req.password.as_ref())
        .await?;
    Ok(ok_with("Answers removed.", Removed { removed }))
}

/// Check one answer (yourself, or `users:manage`). Wrong answers count towards the question
/// lock (5 → 15 minutes); while locked no answer is valid.
#[utoipa::path(post, path = "/api/security-questions/users/{user_id}/security-questions/{question_id}/verify", tag = "security-questions",
    params(("user_id" = Uuid, Path), ("question_id" = Uuid, Path)), request_body = CheckAnswer, security(("bearer" = [])),
    responses((status = 200, body = Envelope<AnswerCheck>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn check_answer(
    State(s): State<AppState>,
    Bearer(p): Bearer,
    AppPath((user_id, question_id)): AppPath<(Uuid, Uuid)>,
    AppJson(req): AppJson<CheckAnswer>,
) -> ApiResult<Json<Envelope<AnswerCheck>>> {
    let valid = s
        .security_questions
        .check_answer(&p, user_id, question_id, &req.answer)
        .await?;
    Ok(ok(AnswerCheck { question_id, valid }))
}

/// The security questions of an address, for recovery. An unknown address, or an account
/// without questions, gets stable decoys of the same shape: the answer says nothing.
#[utoipa::path(post, path = "/api/auth/security-questions", tag = "security-questions", request_body = RecoveryQuestionsRequest,
    responses((status = 200, body = Envelope<Vec<QuestionPromptView>>), (status = 400, body = ErrorBody, description = "`invalid_email`"),
              (status = 429, body = ErrorBody)))]
async fn recovery_questions(
    State(s): State<AppState>,
    AppJson(req): AppJson<RecoveryQuestionsRequest>,
) -> ApiResult<Json<Envelope<Vec<QuestionPromptView>>>> {
    let questions = s.security_questions.recovery_questions(&req.email).await?;
    Ok(ok(questions.into_iter().map(Into::into).collect()))
}

/// Answer every question of an address. All right: a `recovery_proof` (10 minutes, single use)
/// that `reset-password` needs **together with** the emailed token — never instead of it.
/// Wrong answers, decoys and a locked account answer `401 invalid_answers` alike; 5 wrong
/// answers lock question-based recovery for 15 minutes.
#[utoipa::path(post, path = "/api/auth/verify-security-question", tag = "security-questions", request_body = VerifyRecoveryRequest,
    responses((status = 200, body = Envelope<RecoveryProofView>), (status = 400, body = ErrorBody, description = "`invalid_email`, `invalid_answers_format`"),
              (status = 401, body = ErrorBody, description = "`invalid_answers`"), (status = 429, body = ErrorBody)))]
async fn verify_recovery(
    State(s): State<AppState>,
    AppJson(req): AppJson<VerifyRecoveryRequest>,
) -> ApiResult<Json<Envelope<RecoveryProofView>>> {
    let answers: Vec<GivenAnswer> = req
        .answers
        .into_iter()
        .map(|a| GivenAnswer {
            question_id: a.question_id,
            answer: a.answer,
        })
        .collect();
    let proof = s
        .security_questions
        .verify_recovery(&req.email, &answers)
        .await?;
    Ok(ok_with(
        "Answers verified: send recovery_proof with the emailed token to reset-password.",
        RecoveryProofView {
            recovery_proof: proof,
            expires_in: PROOF_TTL_MINUTES * 60,
        },
    ))
}
