//! Transactional mail: templates, the sealed outbox and the delivery worker.
//!
//! Flows never send mail themselves: they render a [`MailMessage`] and put it in the outbox table
//! (encrypted with the deployment's data key, because a reset link is a bearer secret). A [`MailWorker`] delivers
//! queued messages through a [`MailTransport`] (SMTP or a directory of `.eml` files, supplied by the
//! server) and retries with backoff, so a slow or broken mail server never delays a response.
//! Links are built from `EMAIL_BASE_URL`, never from a request's `Host` header.
//!
//! Every message here is an account-security message, so it carries only our own words, the
//! link and the product name: no name, username or other text an account holder chose. Anyone
//! can register an account under someone else's address and ask for a reset, and a first name
//! such as `URGENT - verify at https://evil.test/x` must not reach that inbox inside a genuine
//! mail. [`render`] therefore takes no free text and greets generically.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use askama::Template;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::clock::Clock;
use crate::envelope::Envelope;
use crate::error::Error;
use crate::store::{SealedColumn, Store};

/// Attempts before a message is abandoned.
pub const MAX_ATTEMPTS: i32 = 8;

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailMessage {
    /// Recipient address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body.
    pub html: String,
}

/// Delivers one message. Implemented by the server (SMTP, outbox directory).
#[async_trait]
pub trait MailTransport: Send + Sync {
    /// Sends `message`; an error string is recorded and the message retried.
    async fn send(&self, message: &MailMessage) -> Result<(), String>;
}

/// Supported mail languages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locale {
    /// English.
    En,
    /// Brazilian Portuguese.
    PtBr,
}

impl Locale {
    /// Picks from a stored tag or an `Accept-Language` header; English by default.
    #[must_use]
    pub fn negotiate(tag: &str) -> Self {
        // The supported language with the highest quality (RFC 9110 §12.5.4): `q=0` means "not
        // acceptable", and an entry with an invalid weight is ignored. Ties keep header order.
        let mut best: Option<(f32, Self)> = None;
        for part in tag.split(',').take(32) {
            let mut pieces = part.split(';');
            let lang = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
            let locale = if lang.starts_with("pt") {
                Self::PtBr
            } else if lang.starts_with("en") {
                Self::En
            } else {
                continue;
            };
            let mut q = Some(1.0_f32);
            for param in pieces {
                if let Some(v) = param
                    .trim()
                    .strip_prefix("q=")
                    .or_else(|| param.trim().strip_prefix("Q="))
                {
                    q = v
                        .trim()
                        .parse::<f32>()
                        .ok()
                        .filter(|q| (0.0..=1.0).contains(q));
                }
            }
            match q {
                Some(q) if q > 0.0 && best.is_none_or(|(b, _)| q > b) => best = Some((q, locale)),
                _ => {}
            }
        }
        best.map_or(Self::En, |(_, locale)| locale)
    }

    /// The tag stored on the user.
    #[must_use]
    pub fn tag(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::PtBr => "pt-BR",
        }
    }
}

/// The words of one message in one language.
#[derive(Debug, Clone, Copy)]
struct Wording {
    subject: &'static str,
    greeting: &'static str,
    body: &'static str,
    action: &'static str,
    expiry: &'static str,
    ignore: &'static str,
}

const RESET_EN: Wording = Wording {
    subject: "Reset your password",
    greeting: "Hello",
    body: "We received a request to reset the password of your account. Open the link below to choose a new one.",
    action: "Choose a new password",
    expiry: "The link works once and expires in 30 minutes.",
    ignore: "If you did not ask for this, ignore this message: your password stays the same.",
};
const RESET_PT: Wording = Wording {
    subject: "Redefina sua senha",
    greeting: "Olá",
    body: "Recebemos um pedido para redefinir a senha da sua conta. Abra o link abaixo para escolher uma nova.",
    action: "Escolher nova senha",
    expiry: "O link funciona uma única vez e expira em 30 minutos.",
    ignore: "Se você não fez este pedido, ignore esta mensagem: sua senha continua a mesma.",
};
const CHANGED_EN: Wording = Wording {
    subject: "Your password was changed",
    greeting: "Hello",
    body: "The password of your account was just changed and your other sessions were signed out.",
    action: "",
    expiry: "",
    ignore: "If this was not you, reset your password at once and contact your administrator.",
};
const CHANGED_PT: Wording = Wording {
    subject: "Sua senha foi alterada",
    greeting: "Olá",
    body: "A senha da sua conta acabou de ser alterada e suas outras sessões foram encerradas.",
    action: "",
    expiry: "",
    ignore: "Se não foi você, redefina sua senha imediatamente e fale com o administrador.",
};

const WEBHOOK_DISABLED_EN: Wording = Wording {
    subject: "A webhook endpoint was disabled",
    greeting: "Hello",
    body: "Every delivery to one of this server's webhook endpoints has failed for longer than the configured limit, so the endpoint was disabled. No event is lost: once the receiver works again, enable the endpoint and replay what it missed.",
    action: "Open the webhooks console",
    expiry: "",
    ignore: "You receive this because you administer this server.",
};

const WEBHOOK_DISABLED_PT: Wording = Wording {
    subject: "Um endpoint de webhook foi desativado",
    greeting: "Olá",
    body: "Todas as entregas para um dos endpoints de webhook deste servidor falharam por mais tempo que o limite configurado, e o endpoint foi desativado. Nenhum evento se perdeu: quando o receptor voltar a funcionar, reative o endpoint e reenvie o que ele perdeu.",
    action: "Abrir o console de webhooks",
    expiry: "",
    ignore: "Você recebe esta mensagem porque administra este servidor.",
};

const CONFIRM_EN: Wording = Wording {
    subject: "Confirm your email address",
    greeting: "Hello",
    body: "An account was created with this email address. Open the link below and confirm that the address is yours.",
    action: "Confirm my address",
    expiry: "The link works once and expires in 24 hours.",
    ignore: "If you did not create an account, ignore this message: the address stays unconfirmed.",
};
const CONFIRM_PT: Wording = Wording {
    subject: "Confirme seu endereço de email",
    greeting: "Olá",
    body: "Uma conta foi criada com este endereço de email. Abra o link abaixo e confirme que o endereço é seu.",
    action: "Confirmar meu endereço",
    expiry: "O link funciona uma única vez e expira em 24 horas.",
    ignore: "Se você não criou uma conta, ignore esta mensagem: o endereço continua sem confirmação.",
};
const SIGN_IN_CODE_EN: Wording = Wording {
    subject: "Your sign-in code",
    greeting: "Hello",
    body: "Someone signed in to your account with its password and was asked for a second step. To finish signing in, enter this code:",
    action: "",
    expiry: "The code works once, for this sign-in only, which expires 5 minutes after the password was entered.",
    ignore: "If this was not you, do not share the code: change your password at once, because it is known to someone else.",
};
const SIGN_IN_CODE_PT: Wording = Wording {
    subject: "Seu código de acesso",
    greeting: "Olá",
    body: "Alguém entrou na sua conta com a senha e foi solicitada uma segunda etapa. Para concluir o acesso, digite este código:",
    action: "",
    expiry: "O código funciona uma única vez, só para este acesso, que expira 5 minutos depois de a senha ser digitada.",
    ignore: "Se não foi você, não compartilhe o código: troque sua senha imediatamente, pois outra pessoa a conhece.",
};
const TOTP_ENABLED_EN: Wording = Wording {
    subject: "Two-factor authentication is on",
    greeting: "Hello",
    body: "An authenticator app was just set up for your account: from now on, signing in asks for its code after your password. Keep your backup codes somewhere safe.",
    action: "",
    expiry: "",
    ignore: "If this was not you, reset your password at once and contact your administrator.",
};
const TOTP_ENABLED_PT: Wording = Wording {
    subject: "A autenticação em duas etapas está ativa",
    greeting: "Olá",
    body: "Um aplicativo autenticador acabou de ser configurado na sua conta: a partir de agora, o acesso pede o código dele depois da senha. Guarde seus códigos de backup em local seguro.",
    action: "",
    expiry: "",
    ignore: "Se não foi você, redefina sua senha imediatamente e fale com o administrador.",
};
const SECURITY_ANSWERS_SET_EN: Wording = Wording {
    subject: "Your security questions changed",
    greeting: "Hello",
    body: "The answers to your account's security questions were just set or changed. Resetting your password will ask for them.",
    action: "",
    expiry: "",
    ignore: "If this was not you, reset your password at once and contact your administrator.",
};
const SECURITY_ANSWERS_SET_PT: Wording = Wording {
    subject: "Suas perguntas de segurança foram alteradas",
    greeting: "Olá",
    body: "As respostas às perguntas de segurança da sua conta acabaram de ser definidas ou alteradas. A redefinição de senha vai pedi-las.",
    action: "",
    expiry: "",
    ignore: "Se não foi você, redefina sua senha imediatamente e fale com o administrador.",
};
const SECURITY_ANSWERS_REMOVED_EN: Wording = Wording {
    subject: "Security answers removed",
    greeting: "Hello",
    body: "Answers to your account's security questions were just removed.",
    action: "",
    expiry: "",
    ignore: "If this was not you, reset your password at once and contact your administrator.",
};
const SECURITY_ANSWERS_REMOVED_PT: Wording = Wording {
    subject: "Respostas de segurança removidas",
    greeting: "Olá",
    body: "Respostas às perguntas de segurança da sua conta acabaram de ser removidas.",
    action: "",
    expiry: "",
    ignore: "Se não foi você, redefina sua senha imediatamente e fale com o administrador.",
};
const TOTP_DISABLED_EN: Wording = Wording {
    subject: "Two-factor authentication is off",
    greeting: "Hello",
    body: "Two-factor authentication was just turned off for your account: signing in now asks for your password only, and your backup codes no longer work.",
    action: "",
    expiry: "",
    ignore: "If this was not you, reset your password at once and contact your administrator.",
};
const TOTP_DISABLED_PT: Wording = Wording {
    subject: "A autenticação em duas etapas foi desativada",
    greeting: "Olá",
    body: "A autenticação em duas etapas acabou de ser desativada na sua conta: o acesso agora pede apenas a senha, e seus códigos de backup deixaram de funcionar.",
    action: "",
    expiry: "",
    ignore: "Se não foi você, redefina sua senha imediatamente e fale com o administrador.",
};
const MFA_RESET_EN: Wording = Wording {
    subject: "An administrator reset your two-factor authentication",
    greeting: "Hello",
    body: "An administrator removed the authenticator app and backup codes of your account, usually because you lost your device. Signing in asks for your password only until you set up an app again from your account page.",
    action: "",
    expiry: "",
    ignore: "If you did not ask for this, contact your administrator at once.",
};
const MFA_RESET_PT: Wording = Wording {
    subject: "Um administrador redefiniu sua autenticação em duas etapas",
    greeting: "Olá",
    body: "Um administrador removeu o aplicativo autenticador e os códigos de backup da sua conta, normalmente porque você perdeu o aparelho. O acesso pede apenas a senha até que você configure um aplicativo de novo na página da sua conta.",
    action: "",
    expiry: "",
    ignore: "Se você não pediu isso, fale com o administrador imediatamente.",
};
const BACKUP_CODES_NEW_EN: Wording = Wording {
    subject: "New backup codes were made",
    greeting: "Hello",
    body: "A new set of backup codes was just made for your account. The previous codes no longer work.",
    action: "",
    expiry: "",
    ignore: "If this was not you, reset your password at once and contact your administrator.",
};
const BACKUP_CODES_NEW_PT: Wording = Wording {
    subject: "Novos códigos de backup foram gerados",
    greeting: "Olá",
    body: "Um novo conjunto de códigos de backup acabou de ser gerado para sua conta. Os códigos anteriores deixaram de funcionar.",
    action: "",
    expiry: "",
    ignore: "Se não foi você, redefina sua senha imediatamente e fale com o administrador.",
};
const BACKUP_CODE_USED_EN: Wording = Wording {
    subject: "A backup code was used",
    greeting: "Hello",
    body: "One of your backup codes was just used to confirm your identity. Each code works once; make a new set from your account page when few are left.",
    action: "",
    expiry: "",
    ignore: "If this was not you, someone has your password and a backup code: reset your password at once and contact your administrator.",
};
const BACKUP_CODE_USED_PT: Wording = Wording {
    subject: "Um código de backup foi usado",
    greeting: "Olá",
    body: "Um dos seus códigos de backup acabou de ser usado para confirmar sua identidade. Cada código funciona uma vez; gere um novo conjunto na página da sua conta quando restarem poucos.",
    action: "",
    expiry: "",
    ignore: "Se não foi você, alguém tem sua senha e um código de backup: redefina sua senha imediatamente e fale com o administrador.",
};

const EMAIL_CHANGE_EN: Wording = Wording {
    subject: "Confirm your new email address",
    greeting: "Hello",
    body: "A change of an account's email address to this address was asked for. Open the link below to confirm it: the change takes effect only then.",
    action: "Confirm my new address",
    expiry: "The link works once and expires in 24 hours.",
    ignore: "If you did not ask for this, ignore this message: no account will use this address.",
};
const EMAIL_CHANGE_PT: Wording = Wording {
    subject: "Confirme seu novo endereço de email",
    greeting: "Olá",
    body: "Foi solicitada a troca do endereço de email de uma conta para este endereço. Abra o link abaixo para confirmá-la: a troca só vale depois disso.",
    action: "Confirmar meu novo endereço",
    expiry: "O link funciona uma única vez e expira em 24 horas.",
    ignore: "Se você não pediu isso, ignore esta mensagem: nenhuma conta usará este endereço.",
};
const EMAIL_CHANGE_NOTICE_EN: Wording = Wording {
    subject: "A change of your email address was asked for",
    greeting: "Hello",
    body: "Someone asked to change the email address of your account to another one. A link to confirm the change was sent to the new address; until it is used, your account keeps this address.",
    action: "",
    expiry: "",
    ignore: "If this was not you, change your password at once and contact your administrator.",
};
const EMAIL_CHANGE_NOTICE_PT: Wording = Wording {
    subject: "Foi solicitada a troca do seu endereço de email",
    greeting: "Olá",
    body: "Alguém pediu para trocar o endereço de email da sua conta por outro. Um link para confirmar a troca foi enviado ao novo endereço; até que ele seja usado, sua conta continua com este endereço.",
    action: "",
    expiry: "",
    ignore: "Se não foi você, troque sua senha imediatamente e fale com o administrador.",
};
const EMAIL_IN_USE_EN: Wording = Wording {
    subject: "This email address is already in use",
    greeting: "Hello",
    body: "Someone asked to use this email address for an account, but it already belongs to an account here, so nothing was changed. If it was you, sign in with the account that has this address, or ask for a password reset if you forgot its password.",
    action: "",
    expiry: "",
    ignore: "If you did not ask for this, ignore this message: your account is unchanged.",
};
const EMAIL_IN_USE_PT: Wording = Wording {
    subject: "Este endereço de email já está em uso",
    greeting: "Olá",
    body: "Alguém pediu para usar este endereço de email em uma conta, mas ele já pertence a uma conta aqui, então nada foi alterado. Se foi você, entre com a conta que tem este endereço, ou peça a redefinição da senha se a esqueceu.",
    action: "",
    expiry: "",
    ignore: "Se você não pediu isso, ignore esta mensagem: sua conta não foi alterada.",
};

const RECOVERY_EMAIL_VERIFY_EN: Wording = Wording {
    subject: "Confirm your recovery address",
    greeting: "Hello",
    body: "This address was added as a recovery address of an account: once confirmed, it can receive that account's password-reset links. Open the link below to confirm that the address is yours.",
    action: "Confirm this recovery address",
    expiry: "The link works once and expires in 24 hours.",
    ignore: "If you did not ask for this, ignore this message: the address will not be used.",
};
const RECOVERY_EMAIL_VERIFY_PT: Wording = Wording {
    subject: "Confirme seu endereço de recuperação",
    greeting: "Olá",
    body: "Este endereço foi adicionado como endereço de recuperação de uma conta: depois de confirmado, ele pode receber os links de redefinição de senha dessa conta. Abra o link abaixo para confirmar que o endereço é seu.",
    action: "Confirmar este endereço de recuperação",
    expiry: "O link funciona uma única vez e expira em 24 horas.",
    ignore: "Se você não pediu isso, ignore esta mensagem: o endereço não será usado.",
};
const RECOVERY_EMAIL_IN_USE_EN: Wording = Wording {
    subject: "This email address is already in use",
    greeting: "Hello",
    body: "Someone asked to add this email address as a recovery address of an account, but it already belongs to an account here, so it cannot be used for another one. Nothing was changed.",
    action: "",
    expiry: "",
    ignore: "If you did not ask for this, ignore this message: your account is unchanged.",
};
const RECOVERY_EMAIL_IN_USE_PT: Wording = Wording {
    subject: "Este endereço de email já está em uso",
    greeting: "Olá",
    body: "Alguém pediu para adicionar este endereço de email como endereço de recuperação de uma conta, mas ele já pertence a uma conta aqui e não pode ser usado por outra. Nada foi alterado.",
    action: "",
    expiry: "",
    ignore: "Se você não pediu isso, ignore esta mensagem: sua conta não foi alterada.",
};
const RECOVERY_EMAIL_ADDED_EN: Wording = Wording {
    subject: "A recovery address was added to your account",
    greeting: "Hello",
    body: "A recovery address was just added to your account. Once confirmed through the link sent to it, it can receive password-reset links for your account. You can see and remove your recovery addresses on your account page.",
    action: "",
    expiry: "",
    ignore: "If this was not you, remove the address from your account page, change your password at once and contact your administrator.",
};
const RECOVERY_EMAIL_ADDED_PT: Wording = Wording {
    subject: "Um endereço de recuperação foi adicionado à sua conta",
    greeting: "Olá",
    body: "Um endereço de recuperação acabou de ser adicionado à sua conta. Depois de confirmado pelo link enviado a ele, ele pode receber links de redefinição de senha da sua conta. Você pode ver e remover seus endereços de recuperação na página da sua conta.",
    action: "",
    expiry: "",
    ignore: "Se não foi você, remova o endereço na página da sua conta, troque sua senha imediatamente e fale com o administrador.",
};
const RECOVERY_EMAIL_VERIFIED_EN: Wording = Wording {
    subject: "A recovery address of your account was confirmed",
    greeting: "Hello",
    body: "A recovery address of your account was just confirmed: from now on, password-reset links for your account can be sent to it. You can see and remove your recovery addresses on your account page.",
    action: "",
    expiry: "",
    ignore: "If this was not you, remove the address from your account page, change your password at once and contact your administrator.",
};
const RECOVERY_EMAIL_VERIFIED_PT: Wording = Wording {
    subject: "Um endereço de recuperação da sua conta foi confirmado",
    greeting: "Olá",
    body: "Um endereço de recuperação da sua conta acabou de ser confirmado: a partir de agora, links de redefinição de senha da sua conta podem ser enviados a ele. Você pode ver e remover seus endereços de recuperação na página da sua conta.",
    action: "",
    expiry: "",
    ignore: "Se não foi você, remova o endereço na página da sua conta, troque sua senha imediatamente e fale com o administrador.",
};
const RECOVERY_EMAIL_REMOVED_EN: Wording = Wording {
    subject: "A recovery address was removed from your account",
    greeting: "Hello",
    body: "A recovery address was just removed from your account: password-reset links for your account are no longer sent to it.",
    action: "",
    expiry: "",
    ignore: "If this was not you, change your password at once and contact your administrator.",
};
const RECOVERY_EMAIL_REMOVED_PT: Wording = Wording {
    subject: "Um endereço de recuperação foi removido da sua conta",
    greeting: "Olá",
    body: "Um endereço de recuperação acabou de ser removido da sua conta: links de redefinição de senha da sua conta não são mais enviados a ele.",
    action: "",
    expiry: "",
    ignore: "Se não foi você, troque sua senha imediatamente e fale com o administrador.",
};

#[derive(Template)]
#[template(path = "mail/message.txt")]
struct TextMail<'a> {
    c: Wording,
    link: Option<&'a str>,
    code: Option<&'a str>,
    product: &'a str,
}

#[derive(Template)]
#[template(path = "mail/message.html")]
struct HtmlMail<'a> {
    c: Wording,
    link: Option<&'a str>,
    code: Option<&'a str>,
    product: &'a str,
    lang: &'a str,
}

/// Which message to render.
#[derive(Debug, Clone, Copy)]
pub enum MailKind<'a> {
    /// Password-reset link.
    PasswordReset {
        /// The full link, built from `EMAIL_BASE_URL`.
        link: &'a str,
    },
    /// Notice that the password changed.
    PasswordChanged,
    /// Notice to administrators that the server disabled a failing webhook endpoint.
    WebhookDisabled {
        /// The console's webhooks page, built from `EMAIL_BASE_URL`.
        link: &'a str,
    },
    /// Address-confirmation link.
    EmailConfirmation {
        /// The full link, built from `EMAIL_BASE_URL`.
        link: &'a str,
    },
    /// A code for the second step of a sign-in.
    SignInCode {
        /// The six digits.
        code: &'a str,
    },
    /// Notice that an authenticator app was enabled.
    TotpEnabled,
    /// Notice that two-factor authentication was turned off by the user.
    TotpDisabled,
    /// Notice that an administrator reset two-factor authentication.
    MfaReset,
    /// Notice that a new set of backup codes replaced the old one.
    BackupCodesRegenerated,
    /// Notice that a backup code was used.
    BackupCodeUsed,
    /// Link confirming a change of address, sent to the new address.
    EmailChange {
        /// The full link, built from `EMAIL_BASE_URL`.
        link: &'a str,
    },
    /// Notice to an account's address that a change to another one was asked for.
    EmailChangeRequested,
    /// Notice to an address that another account asked to change to it although an account
    /// has it already (sent instead of [`MailKind::EmailChange`], so that the answer to the
    /// request says nothing about which addresses have accounts).
    EmailInUse,
    /// Link verifying a recovery address, sent to that address.
    RecoveryEmailVerification {
        /// The full link, built from `EMAIL_BASE_URL`.
        link: &'a str,
    },
    /// Notice to an address that an account asked to add it as a recovery address although
    /// another account has it (sent instead of [`MailKind::RecoveryEmailVerification`]).
    RecoveryEmailInUse,
    /// Notice to an account's address that a recovery address was added.
    RecoveryEmailAdded,
    /// Notice to an account's address that a recovery address was verified.
    RecoveryEmailVerified,
    /// Notice to an account's address that a recovery address was removed.
    RecoveryEmailRemoved,
    /// Notice that answers to the account's security questions were set or changed.
    SecurityAnswersSet,
    /// Notice that answers to the account's security questions were removed.
    SecurityAnswersRemoved,
}

/// Renders a message for `to` in `locale`. There is deliberately no parameter for the
/// recipient's name (see the module documentation).
///
/// # Errors
/// Only if a template fails to render, which would be a bug.
pub fn render(
    kind: MailKind<'_>,
    locale: Locale,
    to: &str,
    product: &str,
) -> Result<MailMessage, Error> {
    let mut code = None;
    let (copy, link) = match (kind, locale) {
        (MailKind::PasswordReset { link }, Locale::En) => (RESET_EN, Some(link)),
        (MailKind::PasswordReset { link }, Locale::PtBr) => (RESET_PT, Some(link)),
        (MailKind::PasswordChanged, Locale::En) => (CHANGED_EN, None),
        (MailKind::PasswordChanged, Locale::PtBr) => (CHANGED_PT, None),
        (MailKind::WebhookDisabled { link }, Locale::En) => (WEBHOOK_DISABLED_EN, Some(link)),
        (MailKind::WebhookDisabled { link }, Locale::PtBr) => (WEBHOOK_DISABLED_PT, Some(link)),
        (MailKind::SignInCode { code: c }, _) => {
            code = Some(c);
            (pick(locale, SIGN_IN_CODE_EN, SIGN_IN_CODE_PT), None)
        }
        (MailKind::TotpEnabled, _) => (pick(locale, TOTP_ENABLED_EN, TOTP_ENABLED_PT), None),
        (MailKind::TotpDisabled, _) => (pick(locale, TOTP_DISABLED_EN, TOTP_DISABLED_PT), None),
        (MailKind::SecurityAnswersSet, _) => (
            pick(locale, SECURITY_ANSWERS_SET_EN, SECURITY_ANSWERS_SET_PT),
            None,
        ),
        (MailKind::SecurityAnswersRemoved, _) => (
            pick(
                locale,
                SECURITY_ANSWERS_REMOVED_EN,
                SECURITY_ANSWERS_REMOVED_PT,
            ),
            None,
        ),
        (MailKind::MfaReset, _) => (pick(locale, MFA_RESET_EN, MFA_RESET_PT), None),
        (MailKind::BackupCodesRegenerated, _) => {
            (pick(locale, BACKUP_CODES_NEW_EN, BACKUP_CODES_NEW_PT), None)
        }
        (MailKind::BackupCodeUsed, _) => {
            (pick(locale, BACKUP_CODE_USED_EN, BACKUP_CODE_USED_PT), None)
        }
        (MailKind::EmailConfirmation { link }, _) => {
            (pick(locale, CONFIRM_EN, CONFIRM_PT), Some(link))
        }
        (MailKind::EmailChange { link }, _) => {
            (pick(locale, EMAIL_CHANGE_EN, EMAIL_CHANGE_PT), Some(link))
        }
        (MailKind::EmailChangeRequested, _) => (
            pick(locale, EMAIL_CHANGE_NOTICE_EN, EMAIL_CHANGE_NOTICE_PT),
            None,
        ),
        (MailKind::EmailInUse, _) => (pick(locale, EMAIL_IN_USE_EN, EMAIL_IN_USE_PT), None),
        (MailKind::RecoveryEmailVerification { link }, _) => (
            pick(locale, RECOVERY_EMAIL_VERIFY_EN, RECOVERY_EMAIL_VERIFY_PT),
            Some(link),
        ),
        (MailKind::RecoveryEmailInUse, _) => (
            pick(locale, RECOVERY_EMAIL_IN_USE_EN, RECOVERY_EMAIL_IN_USE_PT),
            None,
        ),
        (MailKind::RecoveryEmailAdded, _) => (
            pick(locale, RECOVERY_EMAIL_ADDED_EN, RECOVERY_EMAIL_ADDED_PT),
            None,
        ),
        (MailKind::RecoveryEmailVerified, _) => (
            pick(
                locale,
                RECOVERY_EMAIL_VERIFIED_EN,
                RECOVERY_EMAIL_VERIFIED_PT,
            ),
            None,
        ),
        (MailKind::RecoveryEmailRemoved, _) => (
            pick(locale, RECOVERY_EMAIL_REMOVED_EN, RECOVERY_EMAIL_REMOVED_PT),
            None,
        ),
    };
    let text = TextMail {
        c: copy,
        link,
        code,
        product,
    }
    .render()
    .map_err(|e| anyhow::anyhow!("mail template: {e}"))?;
    let html = HtmlMail {
        c: copy,
        link,
        code,
        product,
        lang: locale.tag(),
    }
    .render()
    .map_err(|e| anyhow::anyhow!("mail template: {e}"))?;
    Ok(MailMessage {
        to: to.to_owned(),
        subject: format!("{product}: {}", copy.subject),
        text,
        html,
    })
}

fn pick(locale: Locale, en: Wording, pt: Wording) -> Wording {
    match locale {
        Locale::En => en,
        Locale::PtBr => pt,
    }
}

const NEW_DEVICE_EN: Wording = Wording {
    subject: "New sign-in to your account",
    greeting: "Hello",
    body: "Your account was just signed in to from a device it had not used before:",
    action: "This wasn't me",
    expiry: "The link works once, for 7 days. It opens a page where you confirm; that sign-in is then ended, and your password must be reset before it works again.",
    ignore: "If this was you, there is nothing to do.",
};
const NEW_DEVICE_PT: Wording = Wording {
    subject: "Novo acesso à sua conta",
    greeting: "Olá",
    body: "Sua conta acabou de ser acessada de um dispositivo que ela ainda não tinha usado:",
    action: "Não fui eu",
    expiry: "O link funciona uma única vez, por 7 dias. Ele abre uma página onde você confirma; esse acesso é então encerrado, e sua senha precisa ser redefinida antes de voltar a funcionar.",
    ignore: "Se foi você, não é preciso fazer nada.",
};

/// What a new-device alert says about the sign-in. Every value comes from the server (the
/// clock, the client address, the fixed names the user-agent parser knows, the GeoIP
/// database), never text the client chose freely.
#[derive(Debug, Clone, Default)]
pub struct SignInFacts {
    /// When, already formatted for the recipient's language (UTC).
    pub when: String,
    /// Approximate place, only with a GeoIP database.
    pub place: Option<String>,
    /// Browser name, when the user agent names a known one.
    pub browser: Option<String>,
    /// Operating system, when known.
    pub os: Option<String>,
    /// Client address.
    pub ip: Option<String>,
}

#[derive(Template)]
#[template(path = "mail/new_device.txt")]
struct NewDeviceText<'a> {
    c: Wording,
    facts: Vec<(&'static str, String)>,
    link: &'a str,
    product: &'a str,
}

#[derive(Template)]
#[template(path = "mail/new_device.html")]
struct NewDeviceHtml<'a> {
    c: Wording,
    facts: Vec<(&'static str, String)>,
    link: &'a str,
    product: &'a str,
    lang: &'a str,
}

/// Renders the new-device alert with its "this wasn't me" `link` for `to` in `locale`.
///
/// # Errors
/// Only if a template fails to render, which would be a bug.
pub fn render_new_device(
    facts: &SignInFacts,
    link: &str,
    locale: Locale,
    to: &str,
    product: &str,
) -> Result<MailMessage, Error> {
    let copy = pick(locale, NEW_DEVICE_EN, NEW_DEVICE_PT);
    let labels: [&'static str; 5] = match locale {
        Locale::En => [
            "When",
            "Where (approximate)",
            "Browser",
            "Operating system",
            "IP address",
        ],
        Locale::PtBr => [
            "Quando",
            "Onde (aproximado)",
            "Navegador",
            "Sistema operacional",
            "Endereço IP",
        ],
    };
    let unknown = match locale {
        Locale::En => "unknown",
        Locale::PtBr => "desconhecido",
    };
    let mut lines = vec![(labels[0], facts.when.clone())];
    if let Some(place) = &facts.place {
        lines.push((labels[1], place.clone()));
    }
    lines.push((
        labels[2],
        facts.browser.clone().unwrap_or_else(|| unknown.to_owned()),
    ));
    lines.push((
        labels[3],
        facts.os.clone().unwrap_or_else(|| unknown.to_owned()),
    ));
    lines.push((
        labels[4],
        facts.ip.clone().unwrap_or_else(|| unknown.to_owned()),
    ));
    let text = NewDeviceText {
        c: copy,
        facts: lines.clone(),
        link,
        product,
    }
    .render()
    .map_err(|e| anyhow::anyhow!("mail template: {e}"))?;
    let html = NewDeviceHtml {
        c: copy,
        facts: lines,
        link,
        product,
        lang: locale.tag(),
    }
    .render()
    .map_err(|e| anyhow::anyhow!("mail template: {e}"))?;
    Ok(MailMessage {
        to: to.to_owned(),
        subject: format!("{product}: {}", copy.subject),
        text,
        html,
    })
}

/// Puts messages in the outbox and wakes the worker.
#[derive(Clone)]
pub struct Outbox {
    store: Arc<dyn Store>,
    envelope: Arc<Envelope>,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Outbox")
    }
}

impl Outbox {
    /// An outbox over `store`.
    #[must_use]
    pub fn new(store: Arc<dyn Store>, envelope: Arc<Envelope>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            envelope,
            clock,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Seals and queues a message.
    ///
    /// # Errors
    /// On store failure.
    pub async fn queue(&self, message: &MailMessage) -> Result<(), Error> {
        let id = Uuid::new_v4();
        let sealed = self.seal(id, message)?;
        self.store
            .enqueue_mail(id, &sealed, self.clock.now())
            .await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Seals a message as the outbox stores it under id `id` (the deployment's data key, bound
    /// to that row), for a flow that inserts it in a transaction of its own (then calls
    /// [`Outbox::wake`] once that commits).
    ///
    /// # Errors
    /// Only if the message cannot be encoded, which would be a bug.
    pub fn seal(&self, id: Uuid, message: &MailMessage) -> Result<Vec<u8>, Error> {
        let plain = zeroize::Zeroizing::new(
            serde_json::to_vec(message).map_err(|e| anyhow::anyhow!("mail encoding: {e}"))?,
        );
        Ok(self
            .envelope
            .seal_deployment_column(SealedColumn::QueuedMail, &id.to_string(), &plain))
    }

    /// Wakes the delivery worker (a message was queued by another path).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Renders `kind` for `user`'s address, in the account's language, and queues it.
    ///
    /// # Errors
    /// On store failure.
    pub async fn queue_for(
        &self,
        user: &crate::domain::User,
        kind: MailKind<'_>,
        product: &str,
    ) -> Result<(), Error> {
        let message = render(kind, Locale::negotiate(&user.locale), &user.email, product)?;
        self.queue(&message).await
    }

    /// Runs the delivery loop forever: wakes on new mail or every `poll`, whichever comes first.
    pub async fn run_worker(self, transport: Arc<dyn MailTransport>, poll: StdDuration) {
        loop {
            match self.deliver_due(transport.as_ref()).await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "mail outbox: delivery round failed"),
            }
            let _ = tokio::time::timeout(poll, self.wake.notified()).await;
        }
    }

    /// Delivers what is due now. Returns how many messages were handled.
    ///
    /// # Errors
    /// On store failure.
    pub async fn deliver_due(&self, transport: &dyn MailTransport) -> Result<usize, Error> {
        let now = self.clock.now();
        let batch = self
            .store
            .claim_mail(now, now + chrono::Duration::seconds(120), 16)
            .await?;
        let handled = batch.len();
        for mail in batch {
            let message = self
                .envelope
                .open_deployment_column(
                    SealedColumn::QueuedMail,
                    &mail.id.to_string(),
                    &mail.payload,
                )
                .ok()
                .and_then(|plain| serde_json::from_slice::<MailMessage>(&plain).ok());
            let Some(message) = message else {
                tracing::error!(mail_id = %mail.id, "mail outbox: message cannot be opened; dropping it");
                self.store
                    .mail_failed(mail.id, "unreadable payload", None, self.clock.now())
                    .await?;
                continue;
            };
            match transport.send(&message).await {
                Ok(()) => {
                    tracing::info!(mail_id = %mail.id, "mail delivered");
                    self.store.mail_sent(mail.id, self.clock.now()).await?;
                }
                Err(error) => {
                    let retry_at = (mail.attempts < MAX_ATTEMPTS).then(|| {
                        // 2, 4, 8, … seconds, capped at 10 minutes.
                        let backoff = 2_i64
                            .saturating_pow(mail.attempts.clamp(1, 30) as u32)
                            .min(600);
                        self.clock.now() + chrono::Duration::seconds(backoff)
                    });
                    tracing::warn!(mail_id = %mail.id, attempts = mail.attempts, %error, "mail delivery failed");
                    self.store
                        .mail_failed(mail.id, &error, retry_at, self.clock.now())
                        .await?;
                }
            }
        }
        Ok(handled)
    }
}
