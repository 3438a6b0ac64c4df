//! The account page's security-questions section over plain HTTP, as a browser without
//! JavaScript (and the enhanced forms' JSON answers): it lists which questions the account
//! answered (never the answers) and the active catalogue, says that questions count only from
//! two answers, sets and removes answers only with the current password, shows the service's
//! refusals (wrong password, inactive question, too many answers) as messages, and refuses
//! forms without this session's CSRF token. The browser suite (tests/ui/questions.test.mjs)
//! sets two answers in Chromium.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::browser::Jar;
use crate::helpers::{PASSWORD, Reply, TestApp, TestUser, Tokens, spawn_app};
use crate::ui::{form_token, get, location, login_form, post};

const BASE: &str = "/api/security-questions";
const SET: &str = "/ui/account/security-questions";
const REMOVE: &str = "/ui/account/security-questions/remove";

/// Creates questions with these texts as the administrator; returns their ids.
async fn catalogue(app: &TestApp, admin: &Tokens, texts: &[&str]) -> Vec<String> {
    let mut ids = Vec::new();
    for text in texts {
        let r = app
            .post_auth(
                &format!("{BASE}/admin"),
                &admin.access,
                json!({"text": text}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        ids.push(r.data()["id"].as_str().unwrap().to_owned());
    }
    ids
}

/// The account's answers through the API (question ids).
async fn answered(app: &TestApp, user: &TestUser, tokens: &Tokens) -> Vec<String> {
    let r = app
        .get_auth(
            &format!("{BASE}/users/{}/security-questions/answers", user.id),
            &tokens.access,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.data()
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["question_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Whether `answer` is the account's answer to `question` (the API's check).
async fn is_answer(
    app: &TestApp,
    user: &TestUser,
    tokens: &Tokens,
    question: &str,
    answer: &str,
) -> bool {
    let r = app
        .post_auth(
            &format!(
                "{BASE}/users/{}/security-questions/{question}/verify",
                user.id
            ),
            &tokens.access,
            json!({"answer": answer}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.data()["valid"] == Value::Bool(true)
}

/// Signs in through the sign-in form and returns the account page in `lang`.
async fn signed_in(app: &TestApp, jar: &mut Jar, user: &TestUser, lang: &str) -> Reply {
    let token = login_form(app, jar).await;
    let r = post(
        app,
        jar,
        "/ui/login",
        &[
            ("csrf_token", &token),
            ("identifier", &user.email),
            ("password", PASSWORD),
        ],
        false,
    )
    .await;
    assert_eq!(location(&r), "/ui/account", "{}", r.text);
    get(app, jar, "/ui/account", lang).await
}

/// The security-questions section of the account page.
fn section(page: &Reply) -> &str {
    let start = page
        .text
        .find("id=\"security-questions\"")
        .unwrap_or_else(|| panic!("a questions section in {}", page.text));
    let len = page.text[start..].find("</section>").unwrap();
    &page.text[start..start + len]
}

/// Sets an answer through the page's form.
async fn set(
    app: &TestApp,
    jar: &mut Jar,
    token: &str,
    question: &str,
    answer: &str,
    password: &str,
    json: bool,
) -> Reply {
    post(
        app,
        jar,
        SET,
        &[
            ("csrf_token", token),
            ("question_id", question),
            ("answer", answer),
            ("password", password),
        ],
        json,
    )
    .await
}

both_backends! {
    async fn the_section_lists_the_catalogue_and_sets_answers_only_with_the_password(backend: Backend) {
        // Arrange
        let app = spawn_app(backend).await;
        let admin = app.admin().await;
        let qs = catalogue(&app, &admin, &[
            "What was the name of your first pet?",
            "In which city were you born?",
            "What is your favourite book?",
            "What was your first car?",
            "What is your grandmother's name?",
            "What was your first school?",
        ]).await;
        let user = app.register("uiquest").await;
        let tokens = app.sign_in(&user).await;
        let mut jar = Jar::default();

        // The section before any answer: the catalogue, and the two-answer rule.
        let page = signed_in(&app, &mut jar, &user, "en").await;
        assert_eq!(page.status, StatusCode::OK);
        let s = section(&page);
        assert!(s.contains("Security questions") && s.contains("Not in use") && s.contains("0 of 5 answered"), "{s}");
        assert!(s.contains("Security questions are used once you have answered at least 2."), "{s}");
        assert!(s.contains("You have not answered any security question."), "{s}");
        for q in &qs {
            assert!(s.contains(&format!("<option value=\"{q}\">")), "{q} offered: {s}");
        }
        assert!(s.contains("What was the name of your first pet?"));
        assert!(!s.contains(REMOVE), "nothing to remove yet");
        assert_eq!(s.matches("<form").count(), s.matches("name=\"csrf_token\"").count(), "every form carries the token");
        let token = form_token(&page);

        // Act / Assert: a wrong or missing password is refused and changes nothing.
        let r = set(&app, &mut jar, &token, &qs[0], "Rex", "Wrong-pass-1", false).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        assert!(section(&r).contains("The current password is incorrect."), "{}", section(&r));
        let r = set(&app, &mut jar, &token, &qs[0], "Rex", "", true).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        assert_eq!(r.body["code"], "incorrect_password");
        assert!(answered(&app, &user, &tokens).await.is_empty());

        // Bad input: the page again with a message, nothing set.
        let r = set(&app, &mut jar, &token, "", "Rex", PASSWORD, false).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        assert!(section(&r).contains("Choose a question."), "{}", section(&r));
        let r = set(&app, &mut jar, &token, &qs[0], "x", PASSWORD, true).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        assert_eq!(r.body["code"], "invalid_answer");
        let r = set(&app, &mut jar, &token, &uuid::Uuid::new_v4().to_string(), "Rex", PASSWORD, true).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
        assert!(answered(&app, &user, &tokens).await.is_empty());

        // The right password sets the answer; the page lists the question, never the answer.
        let r = set(&app, &mut jar, &token, &qs[0], "Rex", PASSWORD, false).await;
        assert_eq!(location(&r), "/ui/account?notice=security_answer_saved", "{}", r.text);
        let page = get(&app, &mut jar, "/ui/account?notice=security_answer_saved", "en").await;
        assert!(page.text.contains("Answer saved."));
        let s = section(&page);
        assert!(s.contains(&format!("data-answered=\"{}\"", qs[0])) && s.contains("1 of 5 answered"), "{s}");
        assert!(s.contains("Not in use") && s.contains("at least 2"), "one answer is not in use: {s}");
        assert!(s.contains(REMOVE));
        assert!(!page.text.contains("Rex"), "the answer is never shown");
        assert_eq!(answered(&app, &user, &tokens).await, vec![qs[0].clone()]);
        assert!(is_answer(&app, &user, &tokens, &qs[0], " REX ").await);

        // The second answer (the enhanced way) puts the questions in use.
        let r = set(&app, &mut jar, &token, &qs[1], "São Paulo", PASSWORD, true).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.body["redirect"], "/ui/account?notice=security_answer_saved");
        let page = get(&app, &mut jar, "/ui/account", "en").await;
        let s = section(&page);
        assert!(s.contains("In use") && s.contains("2 of 5 answered"), "{s}");
        assert!(!s.contains("data-questions-too-few"), "{s}");
        assert!(!page.text.contains("São Paulo"), "the answer is never shown");
        assert!(is_answer(&app, &user, &tokens, &qs[1], "sao paulo").await);

        // Answering again replaces the answer.
        let r = set(&app, &mut jar, &token, &qs[0], "Bolt", PASSWORD, false).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        assert!(is_answer(&app, &user, &tokens, &qs[0], "bolt").await);
        assert!(!is_answer(&app, &user, &tokens, &qs[0], "rex").await);

        // An inactive question is refused with its message.
        let r = app.put_auth(&format!("{BASE}/admin/{}/deactivate", qs[2]), &admin.access, json!({})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let r = set(&app, &mut jar, &token, &qs[2], "Dom Casmurro", PASSWORD, false).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        let s = section(&r);
        assert!(s.contains("This question is no longer offered."), "{s}");
        assert!(!s.contains(&format!("<option value=\"{}\">", qs[2])), "no longer offered: {s}");
        assert_eq!(answered(&app, &user, &tokens).await.len(), 2);

        // Five answers at most: the sixth is refused with its message.
        for q in &qs[3..6] {
            let r = set(&app, &mut jar, &token, q, "Something", PASSWORD, false).await;
            assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        }
        let page = get(&app, &mut jar, "/ui/account", "en").await;
        assert!(section(&page).contains("5 of 5 answered") && section(&page).contains("the most an account keeps"));
        app.put_auth(&format!("{BASE}/admin/{}", qs[2]), &admin.access, json!({"active": true})).await;
        let r = set(&app, &mut jar, &token, &qs[2], "Dom Casmurro", PASSWORD, true).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        assert_eq!(r.body["code"], "too_many_answers");
        assert!(r.body["message"].as_str().unwrap().contains("at most 5"), "{}", r.text);
        assert_eq!(answered(&app, &user, &tokens).await.len(), 5);
    }

    async fn answers_are_removed_one_or_all_only_with_the_password(backend: Backend) {
        // Arrange: three answers set through the page.
        let app = spawn_app(backend).await;
        let admin = app.admin().await;
        let qs = catalogue(&app, &admin, &[
            "What was the name of your first pet?",
            "In which city were you born?",
            "What is your favourite book?",
        ]).await;
        let user = app.register("uiunquest").await;
        let tokens = app.sign_in(&user).await;
        let mut jar = Jar::default();
        let page = signed_in(&app, &mut jar, &user, "en").await;
        let token = form_token(&page);
        for q in &qs {
            let r = set(&app, &mut jar, &token, q, "Answer", PASSWORD, false).await;
            assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        }
        let page = get(&app, &mut jar, "/ui/account", "en").await;
        let s = section(&page);
        assert!(s.contains(REMOVE) && s.contains("<option value=\"all\">"), "{s}");

        // Act / Assert: a wrong password removes nothing.
        let r = post(&app, &mut jar, REMOVE, &[("csrf_token", &token), ("question_id", &qs[0]), ("password", "Wrong-pass-1")], false).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        assert!(section(&r).contains("The current password is incorrect."));
        let r = post(&app, &mut jar, REMOVE, &[("csrf_token", &token), ("question_id", "all"), ("password", "")], true).await;
        assert_eq!(r.body["code"], "incorrect_password", "{}", r.text);
        assert_eq!(answered(&app, &user, &tokens).await.len(), 3);

        // One answer.
        let r = post(&app, &mut jar, REMOVE, &[("csrf_token", &token), ("question_id", &qs[0]), ("password", PASSWORD)], false).await;
        assert_eq!(location(&r), "/ui/account?notice=security_answer_removed", "{}", r.text);
        let page = get(&app, &mut jar, "/ui/account?notice=security_answer_removed", "en").await;
        assert!(page.text.contains("Answer removed."));
        assert!(!section(&page).contains(&format!("data-answered=\"{}\"", qs[0])));
        assert_eq!(answered(&app, &user, &tokens).await.len(), 2);
        // Not (any longer) answered: not found, nothing else goes.
        let r = post(&app, &mut jar, REMOVE, &[("csrf_token", &token), ("question_id", &qs[0]), ("password", PASSWORD)], true).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
        assert_eq!(answered(&app, &user, &tokens).await.len(), 2);

        // All of them.
        let r = post(&app, &mut jar, REMOVE, &[("csrf_token", &token), ("question_id", "all"), ("password", PASSWORD)], true).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.body["redirect"], "/ui/account?notice=security_answers_removed");
        assert!(answered(&app, &user, &tokens).await.is_empty());
        let page = get(&app, &mut jar, "/ui/account?notice=security_answers_removed", "pt-BR").await;
        assert!(page.text.contains("Todas as suas respostas de segurança foram removidas."), "{}", page.text);
        let s = section(&page);
        assert!(s.contains("Perguntas de segurança") && s.contains("Fora de uso") && s.contains("0 de 5 respondidas"), "{s}");
        assert!(s.contains("As perguntas de segurança passam a valer quando você responde pelo menos 2."), "{s}");
        assert!(!s.contains(REMOVE));
    }

    async fn the_question_forms_refuse_a_missing_forged_or_foreign_csrf_token(backend: Backend) {
        // Arrange: a signed-in account with one answer, and another account's page token.
        let app = spawn_app(backend).await;
        let admin = app.admin().await;
        let qs = catalogue(&app, &admin, &["What was the name of your first pet?", "In which city were you born?"]).await;
        let user = app.register("uiqcsrf").await;
        let tokens = app.sign_in(&user).await;
        let mut jar = Jar::default();
        let page = signed_in(&app, &mut jar, &user, "en").await;
        let token = form_token(&page);
        let r = set(&app, &mut jar, &token, &qs[0], "Rex", PASSWORD, false).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        let other = app.register("uiqcsrf2").await;
        let foreign = {
            let mut elsewhere = Jar::default();
            form_token(&signed_in(&app, &mut elsewhere, &other, "en").await)
        };

        // Act / Assert
        for forged in ["", "forged", foreign.as_str()] {
            for json in [false, true] {
                let r = set(&app, &mut jar, forged, &qs[1], "Recife", PASSWORD, json).await;
                assert_eq!(r.status, StatusCode::FORBIDDEN, "token {forged:?}: {}", r.text);
                if json {
                    assert_eq!(r.body["code"], "csrf_failed");
                }
                let r = post(&app, &mut jar, REMOVE, &[("csrf_token", forged), ("question_id", "all"), ("password", PASSWORD)], json).await;
                assert_eq!(r.status, StatusCode::FORBIDDEN, "token {forged:?}: {}", r.text);
            }
        }
        // A cross-site form sends no cookie: refused too.
        let r = post(&app, &mut Jar::default(), SET, &[("csrf_token", &token), ("question_id", &qs[1]), ("answer", "Recife"), ("password", PASSWORD)], false).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        assert!(location(&r).starts_with("/ui/login"), "to the sign-in page");
        assert_eq!(answered(&app, &user, &tokens).await, vec![qs[0].clone()], "nothing changed");
        let r = set(&app, &mut jar, &token, &qs[1], "Recife", PASSWORD, false).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "this session's token works: {}", r.text);
    }
}
