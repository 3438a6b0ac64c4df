//! The account page's security-questions section: which questions the account has answered
//! (never the answers), a form to answer a question of the active catalogue, and a form to
//! remove one answer or all.
//!
//! Both forms need the current password, as the API does: they call the same service
//! ([`porteiro_core::flows::security_questions::SecurityQuestions`]), which checks it (a wrong
//! one counts towards the account lock) and mails the account a notice. The page says that
//! questions count only from [`MIN_ANSWERS`] answers to active questions: below that, recovery
//! does not ask them.

use axum::Form;
use axum::extract::State;
use axum::response::Response;
use porteiro_core::Error;
use porteiro_core::domain::security_question::{MAX_ANSWERS, MIN_ANSWERS};
use porteiro_core::service::Principal;
use secrecy::SecretString;
use serde::Deserialize;
use uuid::Uuid;

use super::{Section, account_outcome, day, form_caller};
use crate::state::AppState;
use crate::ui::{Messages, Ui};

/// One answered question as the page lists it.
pub(super) struct AnsweredRow {
    pub(super) id: Uuid,
    pub(super) text: String,
    /// When the answer was last set (shown, `datetime`).
    pub(super) at: String,
    pub(super) at_iso: String,
    /// Deactivated questions keep their answer but are not asked.
    pub(super) active: bool,
}

/// A question of the active catalogue, offered for an answer.
pub(super) struct OfferedRow {
    pub(super) id: Uuid,
    pub(super) text: String,
    /// Answering it again replaces the answer.
    pub(super) answered: bool,
}

/// The section's content.
pub(super) struct QuestionsView {
    pub(super) answered: Vec<AnsweredRow>,
    pub(super) offered: Vec<OfferedRow>,
    /// "n of 5 answered", in the page's language.
    pub(super) count: String,
    /// At least [`MIN_ANSWERS`] answers to active questions: recovery asks them.
    pub(super) in_use: bool,
    /// [`MAX_ANSWERS`] answers: only replacing one is possible.
    pub(super) full: bool,
}

impl QuestionsView {
    /// The account's answers and the active catalogue.
    pub(super) async fn load(s: &AppState, t: Messages, p: &Principal) -> Result<Self, Error> {
        let service = &s.security_questions;
        let (answers, catalogue) =
            futures::try_join!(service.answers(p, p.user_id), service.list(true))?;
        let answered_ids: Vec<Uuid> = answers.iter().map(|a| a.question_id).collect();
        let in_use = answers.iter().filter(|a| a.active).count() >= MIN_ANSWERS;
        let full = answers.len() >= MAX_ANSWERS;
        let count = t.fmt(
            "account.questions_count",
            &[
                ("count", &answers.len().to_string()),
                ("max", &MAX_ANSWERS.to_string()),
            ],
        );
        let answered = answers
            .into_iter()
            .map(|a| {
                let (at, at_iso) = day(t, a.updated_at);
                AnsweredRow {
                    id: a.question_id,
                    text: a.question,
                    at,
                    at_iso,
                    active: a.active,
                }
            })
            .collect();
        let offered = catalogue
            .into_iter()
            .map(|q| OfferedRow {
                answered: answered_ids.contains(&q.id),
                id: q.id,
                text: q.text,
            })
            .collect();
        Ok(Self {
            answered,
            offered,
            count,
            in_use,
            full,
        })
    }
}

/// The password of a form, `None` when left empty (refused without counting an attempt).
fn password(raw: String) -> Option<SecretString> {
    (!raw.is_empty()).then(|| SecretString::from(raw))
}

#[derive(Deserialize)]
pub(in crate::ui) struct AnswerForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    question_id: String,
    #[serde(default)]
    answer: String,
    #[serde(default)]
    password: String,
}

/// `POST /ui/account/security-questions`: sets (or replaces) the answer to an active question;
/// needs the current password.
pub(in crate::ui) async fn set_answer(
    State(s): State<AppState>,
    ui: Ui,
    Form(form): Form<AnswerForm>,
) -> Response {
    let p = match form_caller(&s, &ui, &form.csrf_token).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let question_id = form.question_id.trim();
    let result = match Uuid::parse_str(question_id) {
        // The select's empty first option (the enhanced form skips the browser's `required`).
        Err(_) if question_id.is_empty() => Err(Error::validation(
            "question_id",
            "question_required",
            "Choose a question.",
        )),
        Ok(question_id) => s
            .security_questions
            .set_answer(
                &p,
                p.user_id,
                question_id,
                &SecretString::from(form.answer),
                password(form.password).as_ref(),
            )
            .await
            .map(|_| ()),
        Err(_) => Err(Error::NotFound),
    };
    account_outcome(
        &s,
        &ui,
        &p,
        result,
        Section::Questions,
        "security_answer_saved",
    )
    .await
}

#[derive(Deserialize)]
pub(in crate::ui) struct RemoveForm {
    #[serde(default)]
    csrf_token: String,
    /// A question's id, or `all`.
    #[serde(default)]
    question_id: String,
    #[serde(default)]
    password: String,
}

/// `POST /ui/account/security-questions/remove`: removes one answer, or all (`question_id=all`);
/// needs the current password.
pub(in crate::ui) async fn remove_answers(
    State(s): State<AppState>,
    ui: Ui,
    Form(form): Form<RemoveForm>,
) -> Response {
    let p = match form_caller(&s, &ui, &form.csrf_token).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let which = match form.question_id.trim() {
        "all" => Ok(None),
        id => Uuid::parse_str(id).map(Some).map_err(|_| Error::NotFound),
    };
    let notice = if matches!(which, Ok(None)) {
        "security_answers_removed"
    } else {
        "security_answer_removed"
    };
    let result = match which {
        Ok(which) => s
            .security_questions
            .remove_answers(&p, p.user_id, which, password(form.password).as_ref())
            .await
            .map(|_| ()),
        Err(e) => Err(e),
    };
    account_outcome(&s, &ui, &p, result, Section::QuestionsRemove, notice).await
}
