//! Roles and permissions (RBAC).
//!
//! A user holds roles; a role grants permissions. Two roles are built in: `admin`, which grants
//! every permission there is (including ones created later: the grant is implicit, not a list of
//! rows), and `user`, which every account receives at registration. The permissions the server
//! itself checks are [`Permission`]s, built in too. Built-ins cannot be renamed or deleted.
//!
//! Names are validated here, once: a permission is `resource:action`, a role a single word, both
//! lowercase `[a-z0-9_-]` and at most 64 characters in total.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::Error;

/// The built-in `admin` role (fixed id, created by migration 0009).
pub const ADMIN_ROLE_ID: Uuid = Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0001);
/// The built-in `user` role, given at registration.
pub const USER_ROLE_ID: Uuid = Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0002);
/// Name of the `admin` role.
pub const ADMIN_ROLE: &str = "admin";
/// Name of the `user` role.
pub const USER_ROLE: &str = "user";

/// Longest role or permission name.
pub const MAX_NAME_LEN: usize = 64;
/// Longest description.
pub const MAX_DESCRIPTION_LEN: usize = 500;

macro_rules! permissions {
    ($($variant:ident = $bit:literal, $name:literal, $doc:literal;)*) => {
        /// A permission the server checks itself. Each is a built-in row of `permissions`, with
        /// the fixed id [`Permission::id`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Permission {
            $(#[doc = $doc] $variant = $bit,)*
        }

        impl Permission {
            /// Every built-in permission.
            pub const ALL: &'static [Permission] = &[$(Permission::$variant,)*];

            /// The permission's name (`resource:action`).
            #[must_use]
            pub const fn name(self) -> &'static str {
                match self {
                    $(Permission::$variant => $name,)*
                }
            }

            /// What the permission allows, in English.
            #[must_use]
            pub const fn description(self) -> &'static str {
                match self {
                    $(Permission::$variant => $doc,)*
                }
            }

            /// The built-in permission of this name.
            #[must_use]
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($name => Some(Permission::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

permissions! {
    PermissionsManage = 1, "permissions:manage", "Create, rename and delete permissions.";
    RolesManage = 2, "roles:manage", "Create, rename and delete roles.";
    RolesAssignPermission = 3, "roles:assign-permission", "Grant permissions to roles and take them back.";
    UsersAssignRole = 4, "users:assign-role", "Give roles to users and take them back.";
    UsersRead = 5, "users:read", "List and read other users' accounts, roles, sessions and permissions.";
    UsersManage = 6, "users:manage", "Change, disable, unlock, sign out and delete other users' accounts.";
    AuditRead = 7, "audit:read", "Read every account's audit events.";
    WebhooksManage = 8, "webhooks:manage", "Create, change and delete webhook endpoints and read their deliveries.";
    SystemMaintain = 9, "system:maintain", "Run maintenance jobs (clean expired tokens, codes and sessions).";
    SecurityQuestionsManage = 10, "security_questions:manage", "Create, change and deactivate security questions.";
    TokensIntrospect = 11, "tokens:introspect", "Introspect tokens (RFC 7662) with a bearer token.";
}

impl Permission {
    /// The fixed id of the built-in row (migration 0009 and later ones insert them).
    #[must_use]
    pub const fn id(self) -> Uuid {
        Uuid::from_u128(0x0000_0000_0000_4000_8001_0000_0000_0000 | self as u128)
    }

    const fn bit(self) -> u32 {
        1 << (self as u8)
    }
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The built-in permissions a caller holds: what every request carries, copied, so that checks
/// are a bit test. Custom permissions are looked up by name ([`Grants`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PermSet(u32);

impl PermSet {
    /// No permission.
    pub const EMPTY: Self = Self(0);

    /// Every built-in permission.
    #[must_use]
    pub fn all() -> Self {
        Permission::ALL.iter().copied().collect()
    }

    /// Whether `p` is in the set.
    #[must_use]
    pub const fn has(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }

    /// The set with `p` added.
    #[must_use]
    pub const fn with(self, p: Permission) -> Self {
        Self(self.0 | p.bit())
    }
}

impl FromIterator<Permission> for PermSet {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        iter.into_iter().fold(Self::EMPTY, Self::with)
    }
}

/// What one user holds: role names and every permission name, sorted. The permissions of the
/// `admin` role are all that exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Role names, sorted.
    pub roles: Vec<String>,
    /// Permission names, sorted and unique.
    pub permissions: Vec<String>,
}

impl Grants {
    /// Whether the grants include the permission `name`.
    #[must_use]
    pub fn allows(&self, name: &str) -> bool {
        self.permissions
            .binary_search_by(|p| p.as_str().cmp(name))
            .is_ok()
    }

    /// The built-in permissions among them.
    #[must_use]
    pub fn builtin(&self) -> PermSet {
        self.permissions
            .iter()
            .filter_map(|n| Permission::from_name(n))
            .collect()
    }

    /// Whether the user holds the `admin` role.
    #[must_use]
    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == ADMIN_ROLE)
    }
}

/// A role or a permission as stored (both have the same shape).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RbacObject {
    /// Identifier.
    pub id: Uuid,
    /// Unique name.
    pub name: String,
    /// Free text (may be empty).
    pub description: String,
    /// Built in: cannot be renamed or deleted.
    pub builtin: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// Which of the two kinds of object a name or a store call is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RbacKind {
    /// `roles`.
    Role,
    /// `permissions`.
    Permission,
}

impl RbacKind {
    /// The table (and the audit `object`).
    #[must_use]
    pub const fn table(self) -> &'static str {
        match self {
            Self::Role => "roles",
            Self::Permission => "permissions",
        }
    }
}

fn invalid_name(message: &'static str) -> Error {
    Error::validation("name", "invalid_name", message)
}

fn word_ok(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Checks a name of `kind`: a role is one lowercase word, a permission `resource:action`.
///
/// # Errors
/// `Validation` with code `invalid_name`.
pub fn parse_name(kind: RbacKind, name: &str) -> Result<String, Error> {
    if name.len() > MAX_NAME_LEN {
        return Err(invalid_name("Names are at most 64 characters."));
    }
    match kind {
        RbacKind::Role if word_ok(name) => Ok(name.to_owned()),
        RbacKind::Role => Err(invalid_name(
            "A role name is lowercase letters, digits, '_' and '-'.",
        )),
        RbacKind::Permission => match name.split_once(':') {
            Some((resource, action)) if word_ok(resource) && word_ok(action) => Ok(name.to_owned()),
            _ => Err(invalid_name(
                "A permission name is 'resource:action', in lowercase letters, digits, '_' and '-'.",
            )),
        },
    }
}

/// Direction overrides and invisible characters, which could make a description in the admin
/// console read differently from what it says.
const fn invisible(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// Checks a description: at most 500 characters, no control characters but newlines, no
/// direction overrides or invisible characters.
///
/// # Errors
/// `Validation` with code `invalid_description`.
pub fn parse_description(text: Option<&str>) -> Result<String, Error> {
    let text = text.unwrap_or_default().trim();
    if text.chars().count() > MAX_DESCRIPTION_LEN
        || text
            .chars()
            .any(|c| (c.is_control() && c != '\n') || invisible(c))
    {
        return Err(Error::validation(
            "description",
            "invalid_description",
            "A description is at most 500 characters of text.",
        ));
    }
    Ok(text.to_owned())
}

/// Parses the comma-separated role names a user row carries (see the stores' `user_cols`).
#[must_use]
pub fn roles_from_column(column: Option<&str>) -> Vec<String> {
    let mut roles: Vec<String> = column
        .unwrap_or_default()
        .split(',')
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .collect();
    roles.sort_unstable();
    roles
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(parse_name(RbacKind::Permission, "users:read").is_ok());
        assert!(parse_name(RbacKind::Permission, "security_questions:manage").is_ok());
        assert!(parse_name(RbacKind::Permission, "roles:assign-permission").is_ok());
        for bad in [
            "users",
            "Users:read",
            "users:",
            ":read",
            "a:b:c",
            "users :read",
            "ü:x",
            "",
        ] {
            assert!(parse_name(RbacKind::Permission, bad).is_err(), "{bad}");
        }
        assert!(parse_name(RbacKind::Role, "support-staff_2").is_ok());
        for bad in ["Admin", "a b", "a:b", "", "é"] {
            assert!(parse_name(RbacKind::Role, bad).is_err(), "{bad}");
        }
        let long = "a".repeat(65);
        assert!(parse_name(RbacKind::Role, &long).is_err());
        assert!(parse_name(RbacKind::Role, &long[..64]).is_ok());
    }

    #[test]
    fn builtin_permissions_are_valid_and_distinct() {
        let mut ids = std::collections::HashSet::new();
        for p in Permission::ALL {
            assert!(parse_name(RbacKind::Permission, p.name()).is_ok());
            assert_eq!(Permission::from_name(p.name()), Some(*p));
            assert!(ids.insert(p.id()));
            assert!(PermSet::all().has(*p));
        }
        assert!(!PermSet::EMPTY.has(Permission::UsersRead));
    }

    #[test]
    fn grants() {
        let g = Grants {
            roles: vec!["admin".into()],
            permissions: vec!["a:b".into(), "users:read".into()],
        };
        assert!(g.allows("users:read") && g.allows("a:b") && !g.allows("users:manage"));
        assert!(g.builtin().has(Permission::UsersRead));
        assert!(g.is_admin());
        assert_eq!(roles_from_column(Some("user,admin")), ["admin", "user"]);
        assert!(roles_from_column(None).is_empty());
    }
}
