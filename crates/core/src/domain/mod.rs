//! Domain newtypes and records. Parsing happens once, at the edge: a value of these types is valid.

pub mod audit;
pub mod device;
pub mod email;
pub mod email_confirmation;
pub mod maintenance;
pub mod message;
pub mod mfa;
pub mod names;
pub mod password;
pub mod rbac;
pub mod recovery_email;
pub mod security_question;
pub mod session;
pub mod sign_in_alert;
pub mod user;
pub mod username;
pub mod webhook;

pub use audit::{AuditEvent, AuditFilter, NewAuditEvent, Outcome};
pub use email::{Email, EmailPolicy, login_key};
pub use password::{PasswordIssue, Strength, StrengthLevel};
pub use session::{NewSession, Session, SessionAuthState};
pub use user::{NewUser, ProfileUpdate, SearchPrefix, User, UserId, UserQuery};
pub use username::Username;
