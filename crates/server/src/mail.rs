//! Mail transports: SMTP through lettre, or `.eml` files in the outbox directory.

use std::path::PathBuf;

use async_trait::async_trait;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use porteiro_core::mail::{MailMessage, MailTransport};
use secrecy::ExposeSecret as _;

use crate::config::{MailConfig, SmtpConfig, SmtpTls};

fn build_message(from: &Mailbox, message: &MailMessage) -> Result<Message, String> {
    // A bare address, parsed as `Address` exactly like `porteiro_core::domain::Email` parses
    // every address it accepts, so a stored address never fails here for its syntax.
    let to: Address = message
        .to
        .parse()
        .map_err(|e| format!("bad recipient: {e}"))?;
    let to = Mailbox::new(None, to);
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(&message.subject)
        .multipart(MultiPart::alternative_plain_html(
            message.text.clone(),
            message.html.clone(),
        ))
        .map_err(|e| format!("cannot build message: {e}"))
}

fn sender(config: &MailConfig) -> anyhow::Result<Mailbox> {
    format!("{} <{}>", config.from_name, config.from)
        .parse()
        .map_err(|e| anyhow::anyhow!("configuration error: EMAIL_FROM: {e}"))
}

/// Delivers through an SMTP relay.
pub struct SmtpMailTransport {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpMailTransport {
    /// Builds the transport (no connection is made until the first message).
    ///
    /// # Errors
    /// On invalid TLS parameters or sender.
    pub fn new(smtp: &SmtpConfig, mail: &MailConfig) -> anyhow::Result<Self> {
        let builder = match smtp.tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
            SmtpTls::StartTls => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
                    .tls(Tls::Required(TlsParameters::new(smtp.host.clone())?))
            }
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
                .tls(Tls::Wrapper(TlsParameters::new(smtp.host.clone())?)),
        };
        let mut builder = builder
            .port(smtp.port)
            .timeout(Some(std::time::Duration::from_secs(20)));
        if let Some((user, pass)) = &smtp.credentials {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                pass.expose_secret().to_owned(),
            ));
        }
        Ok(Self {
            transport: builder.build(),
            from: sender(mail)?,
        })
    }
}

#[async_trait]
impl MailTransport for SmtpMailTransport {
    async fn send(&self, message: &MailMessage) -> Result<(), String> {
        let email = build_message(&self.from, message)?;
        self.transport
            .send(email)
            .await
            .map(|_| ())
            .map_err(|e| format!("smtp: {e}"))
    }
}

/// Writes each message as an `.eml` file (development default when no SMTP server is set).
pub struct DirectoryTransport {
    dir: PathBuf,
    from: Mailbox,
}

impl DirectoryTransport {
    /// Creates the directory if needed.
    ///
    /// # Errors
    /// When the directory cannot be created.
    pub fn new(mail: &MailConfig) -> anyhow::Result<Self> {
        crate::app::create_private_dir(&mail.outbox_dir)?;
        Ok(Self {
            dir: mail.outbox_dir.clone(),
            from: sender(mail)?,
        })
    }
}

#[async_trait]
impl MailTransport for DirectoryTransport {
    async fn send(&self, message: &MailMessage) -> Result<(), String> {
        let email = build_message(&self.from, message)?;
        let name = format!(
            "{}-{}.eml",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
            uuid::Uuid::new_v4().simple()
        );
        let path = self.dir.join(name);
        // The file holds a live reset link: owner-only, like the rest of DATA_DIR.
        let mut options = tokio::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        options.mode(0o600);
        let mut file = options
            .open(&path)
            .await
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        tokio::io::AsyncWriteExt::write_all(&mut file, &email.formatted())
            .await
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        // The file holds the link; the log only says where it is.
        tracing::info!(path = %path.display(), subject = %message.subject, "mail written to the outbox directory");
        Ok(())
    }
}
