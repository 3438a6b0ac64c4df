//! Sign-up.

use secrecy::{ExposeSecret as _, SecretString};
use uuid::Uuid;

use serde_json::json;

use crate::domain::audit::{Outcome, kind};
use crate::domain::names::parse_optional_name;
use crate::domain::password::{PolicyContext, check_policy};
use crate::domain::{Email, NewUser, User, Username};
use crate::error::Error;
use crate::mail::Locale;
use crate::service::Auth;

/// A sign-up request as received.
#[derive(Debug, Clone)]
pub struct Registration {
    /// Desired username.
    pub username: String,
    /// Email address.
    pub email: String,
    /// Password.
    pub password: SecretString,
    /// Must equal `password` when present.
    pub confirm_password: Option<SecretString>,
    /// Optional first name.
    pub first_name: Option<String>,
    /// Optional last name.
    pub last_name: Option<String>,
    /// Preferred language tag or `Accept-Language`.
    pub locale: Option<String>,
    /// Administrator account (CLI and first-run only).
    pub is_admin: bool,
    /// The address counts as confirmed from the start (accounts an administrator creates).
    pub email_verified: bool,
}

/// Checks that an optional confirmation equals the password (constant time).
///
/// # Errors
/// `Validation` with code `password_mismatch`.
pub fn ensure_confirmed(
    field: &'static str,
    password: &SecretString,
    confirm: Option<&SecretString>,
) -> Result<(), Error> {
    match confirm {
        Some(c)
            if !crate::crypto::ct_eq(
                c.expose_secret().as_bytes(),
                password.expose_secret().as_bytes(),
            ) =>
        {
            Err(Error::validation(
                field,
                "password_mismatch",
                "The passwords do not match.",
            ))
        }
        _ => Ok(()),
    }
}

impl Auth {
    /// Validates and creates an account.
    ///
    /// # Errors
    /// `Validation`, `WeakPassword`, `Conflict { field }`, or `Overloaded`.
    pub async fn register(&self, input: Registration) -> Result<User, Error> {
        self.create_account(input, true).await
    }

    /// Creates an account; `check_policy` is false only for a password this server generated
    /// (the first administrator's, random by construction), so that a first start does not load
    /// the guessability dictionaries for nothing.
    pub(crate) async fn create_account(
        &self,
        input: Registration,
        check_policy: bool,
    ) -> Result<User, Error> {
        let username = Username::parse(&input.username)?;
        let email = Email::parse(&input.email, self.config.email_policy)?;
        let first_name = parse_optional_name("first_name", input.first_name.as_deref())?;
        let last_name = parse_optional_name("last_name", input.last_name.as_deref())?;
        ensure_confirmed(
            "confirm_password",
            &input.password,
            input.confirm_password.as_ref(),
        )?;
        if check_policy {
            self.check_password_policy(
                &input.password,
                PolicyContext {
                    username: Some(username.as_str()),
                    email: Some(email.as_str()),
                    first_name: first_name.as_deref(),
                    last_name: last_name.as_deref(),
                    ..PolicyContext::default()
                },
            )?;
        }
        let password_hash = self.hasher.hash(&input.password).await?;
        let locale = Locale::negotiate(input.locale.as_deref().unwrap_or("en"));
        let id = Uuid::now_v7();
        let registered = [self.event(
            kind::USER_REGISTERED,
            Outcome::Success,
            Some(id),
            None,
            json!({"is_admin": input.is_admin, "email_verified": input.email_verified}),
        )];
        let user = self
            .store
            .insert_user(
                &NewUser {
                    id,
                    username_key: username.key(),
                    username: username.as_str().to_owned(),
                    email: email.into_inner(),
                    first_name,
                    last_name,
                    password_hash,
                    is_admin: input.is_admin,
                    locale: locale.tag().to_owned(),
                    now: self.now(),
                    email_verified: input.email_verified,
                },
                &registered,
            )
            .await?;
        tracing::info!(user_id = %user.id, "account created");
        crate::flows::audit::committed(&registered);
        Ok(user)
    }

    /// Applies the password policy, with the account's own words (`ctx`: username, email,
    /// names; `PolicyContext::for_user`) counted against the password. Every path that sets a
    /// password calls this: registration, change, reset, the CLI and administrators.
    ///
    /// # Errors
    /// `WeakPassword` with every issue found.
    pub fn check_password_policy(
        &self,
        password: &SecretString,
        ctx: PolicyContext<'_>,
    ) -> Result<(), Error> {
        let ctx = PolicyContext {
            bcrypt: self.hasher.scheme().is_bcrypt(),
            ..ctx
        };
        let issues = check_policy(password.expose_secret(), ctx);
        if issues.is_empty() {
            Ok(())
        } else {
            Err(Error::WeakPassword(issues))
        }
    }
}
