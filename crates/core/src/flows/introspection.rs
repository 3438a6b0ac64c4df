//! RFC 7662 token introspection for resource servers.
//!
//! Inactive answers carry nothing but `active: false`, whatever the reason (RFC 7662 §2.2).

use chrono::{DateTime, Utc};

use crate::crypto::token_hash;
use crate::error::Error;
use crate::flows::login::looks_like_token;
use crate::service::Auth;

/// What introspection learned about a token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[expect(
    clippy::large_enum_variant,
    reason = "one value per introspection request, moved once into the response"
)]
pub enum Introspection {
    /// Not a live token of ours.
    Inactive,
    /// A live token.
    Active {
        /// `access_token` or `refresh_token`.
        token_type: &'static str,
        /// User id.
        sub: String,
        /// Username.
        username: String,
        /// Session id.
        sid: String,
        /// Expiry.
        exp: DateTime<Utc>,
        /// Issue time (access tokens).
        iat: Option<i64>,
        /// Token id (access tokens).
        jti: Option<String>,
        /// How the session was authenticated.
        amr: Vec<String>,
        /// The user's roles now.
        roles: Vec<String>,
        /// Every permission the user holds now.
        permissions: Vec<String>,
    },
}

impl Auth {
    /// Describes `token`, optionally hinted as `access_token` or `refresh_token`.
    ///
    /// # Errors
    /// On store failure.
    pub async fn introspect(
        &self,
        token: &str,
        _hint: Option<&str>,
    ) -> Result<Introspection, Error> {
        let token = token.trim();
        let now = self.now();
        if looks_like_token(token, 43) {
            let Some(session) = self
                .store
                .refresh_token_session(&token_hash(token), now)
                .await?
            else {
                return Ok(Introspection::Inactive);
            };
            let Some(user) = self
                .store
                .user_by_id(session.user_id)
                .await?
                .filter(|u| u.is_active)
            else {
                return Ok(Introspection::Inactive);
            };
            if !session.is_active(now) {
                return Ok(Introspection::Inactive);
            }
            let grants = self.grants.get(self.store.as_ref(), user.id).await?;
            return Ok(Introspection::Active {
                token_type: "refresh_token",
                sub: user.id.to_string(),
                username: user.username,
                sid: session.id.to_string(),
                exp: session.expires_at,
                iat: None,
                jti: None,
                amr: session.amr,
                roles: grants.roles.clone(),
                permissions: grants.permissions.clone(),
            });
        }
        let Ok((principal, claims)) = self.authenticate_claims(token).await else {
            return Ok(Introspection::Inactive);
        };
        let Some(user) = self.store.user_by_id(principal.user_id).await? else {
            return Ok(Introspection::Inactive);
        };
        let grants = self.grants.get(self.store.as_ref(), user.id).await?;
        Ok(Introspection::Active {
            token_type: "access_token",
            sub: claims.sub.clone(),
            username: user.username,
            sid: claims.sid.clone(),
            exp: DateTime::from_timestamp(claims.exp, 0).unwrap_or(now),
            iat: Some(claims.iat),
            jti: Some(claims.jti.clone()),
            amr: claims.amr.clone(),
            roles: grants.roles.clone(),
            permissions: grants.permissions.clone(),
        })
    }

    /// The public signing keys.
    #[must_use]
    pub fn jwks(&self) -> crate::keys::Jwks {
        self.keys.jwks(self.now())
    }
}
