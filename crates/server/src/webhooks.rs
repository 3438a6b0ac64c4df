//! The webhook delivery worker: from the delivery queue to the receivers.
//!
//! Every `WEBHOOK_POLL_INTERVAL`, and whenever an attempt ends (its slot is free again), it asks
//! the store which enabled endpoints have due deliveries,
//! and for each one leases as many as the endpoint has free slots (`WEBHOOK_CONCURRENCY` minus
//! the attempts this instance already has in flight to it). Each attempt runs in its own task,
//! so a slow or dead endpoint holds only its own slots and never delays another. A lease lasts
//! the attempt timeout plus [`LEASE_MARGIN`]: if this process dies mid-attempt, the delivery
//! becomes due again when the lease ends and is retried (by this instance after a restart, or by
//! another one sharing the database; PostgreSQL hands a leased row to one worker only).
//!
//! Requests go out through [`http_client`]: no proxy, no redirects, a total timeout, and a DNS
//! resolver that keeps only addresses the SSRF policy allows ([`porteiro_core::net`]), so the
//! connection is made to a vetted address even if the name now resolves elsewhere (DNS
//! rebinding). reqwest does not consult the resolver for an IP-literal host, so those are
//! checked here before sending. At most [`MAX_RESPONSE_BYTES`] of a response are read, and
//! none of it is kept.
//!
//! Delivery is at least once: the `webhook-id` is the event's, stable across retries and
//! replays, so receivers can deduplicate.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use porteiro_core::domain::webhook::ClaimedDelivery;
use porteiro_core::flows::webhooks::{
    AttemptFate, AttemptReport, SigningKeys, Webhooks, message_id, payload,
};
use porteiro_core::net;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use uuid::Uuid;

/// How much longer than the attempt timeout a lease lasts: room to record the result.
pub const LEASE_MARGIN: chrono::Duration = chrono::Duration::seconds(5);
/// The most of a response body read (and thrown away).
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024;
/// Completed deliveries (delivered and dead) are kept this long in the delivery log.
pub const DELIVERY_LOG_RETENTION: chrono::Duration = chrono::Duration::days(30);
/// How often old deliveries are purged.
const PURGE_EVERY: StdDuration = StdDuration::from_secs(600);

/// Resolves names with the system resolver and keeps only the addresses the SSRF policy
/// allows; fails when none is left.
#[derive(Debug, Clone, Copy)]
struct VettedResolver {
    allow_private: bool,
}

impl Resolve for VettedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let allowed: Vec<SocketAddr> = found
                .filter(|a| net::address_allowed(a.ip(), allow_private))
                .collect();
            if allowed.is_empty() {
                return Err(format!(
                    "{host} resolves to no address the SSRF policy allows (loopback, private, link-local and reserved addresses are refused)"
                )
                .into());
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// The HTTP client deliveries go through (see the module documentation).
///
/// # Errors
/// When the TLS backend cannot be initialised.
pub fn http_client(timeout: StdDuration, allow_private: bool) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .dns_resolver(Arc::new(VettedResolver { allow_private }))
        .user_agent(concat!(
            "Porteiro-Webhooks/",
            env!("CARGO_PKG_VERSION"),
            " (+https://www.standardwebhooks.com/)"
        ))
        .build()?)
}

/// Where one endpoint's leased deliveries go, and what signs them.
struct Target {
    url: Result<reqwest::Url, String>,
    keys: Result<SigningKeys, String>,
}

/// Counts this instance's attempts in flight per endpoint.
#[derive(Debug, Default)]
struct InFlight(Mutex<HashMap<Uuid, u32>>);

impl InFlight {
    fn count(&self, id: Uuid) -> u32 {
        self.0
            .lock()
            .map_or(0, |m| m.get(&id).copied().unwrap_or(0))
    }

    fn enter(self: &Arc<Self>, id: Uuid) -> Slot {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(id).or_insert(0) += 1;
        }
        Slot {
            in_flight: Arc::clone(self),
            id,
        }
    }
}

/// One attempt's hold on its endpoint's slot, released when the attempt task ends (however).
struct Slot {
    in_flight: Arc<InFlight>,
    id: Uuid,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut m) = self.in_flight.0.lock()
            && let Some(n) = m.get_mut(&self.id)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.id);
            }
        }
    }
}

/// The worker.
pub struct Worker {
    hooks: Arc<Webhooks>,
    client: reqwest::Client,
    in_flight: Arc<InFlight>,
    /// Rung when an attempt ends: its slot is free, so the next round need not wait for the
    /// poll interval (a backlog drains as fast as the receivers answer).
    slot_freed: tokio::sync::Notify,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").finish_non_exhaustive()
    }
}

impl Worker {
    /// A worker for `hooks`.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(hooks: Arc<Webhooks>) -> anyhow::Result<Self> {
        let settings = hooks.settings();
        let client = http_client(settings.timeout, settings.allow_private)?;
        Ok(Self {
            hooks,
            client,
            in_flight: Arc::default(),
            slot_freed: tokio::sync::Notify::new(),
        })
    }

    /// Runs forever: a round every `WEBHOOK_POLL_INTERVAL` and after every finished attempt, and
    /// a purge of old deliveries every ten minutes.
    pub async fn run(self: Arc<Self>) {
        let poll = self.hooks.settings().poll_interval;
        let mut last_purge: Option<Instant> = None;
        loop {
            if let Err(e) = self.round().await {
                tracing::warn!(error = %e, "webhooks: delivery round failed");
            }
            if last_purge.is_none_or(|t| t.elapsed() >= PURGE_EVERY) {
                last_purge = Some(Instant::now());
                let before = self.hooks.now() - DELIVERY_LOG_RETENTION;
                match self.hooks.store().purge_webhook_deliveries(before).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(rows = n, "webhooks: old deliveries purged"),
                    Err(e) => tracing::warn!(error = %e, "webhooks: purging old deliveries failed"),
                }
            }
            // The next round starts after the poll interval, or as soon as an attempt ends and
            // frees its endpoint's slot (a permit is stored if one ended during this round).
            tokio::select! {
                () = tokio::time::sleep(poll) => {}
                () = self.slot_freed.notified() => {}
            }
        }
    }

    /// Leases what is due and starts an attempt task for each delivery.
    ///
    /// # Errors
    /// On store failure.
    pub async fn round(self: &Arc<Self>) -> Result<(), porteiro_core::Error> {
        let settings = self.hooks.settings();
        let store = self.hooks.store();
        let now = self.hooks.now();
        let timeout =
            chrono::Duration::from_std(settings.timeout).unwrap_or(chrono::Duration::seconds(10));
        for endpoint_id in store.endpoints_with_due_deliveries(now).await? {
            let free = settings
                .concurrency
                .saturating_sub(self.in_flight.count(endpoint_id));
            if free == 0 {
                continue;
            }
            let lease_until = now + timeout + LEASE_MARGIN;
            let claimed = store
                .claim_webhook_deliveries(endpoint_id, now, lease_until, free)
                .await?;
            if claimed.is_empty() {
                continue;
            }
            let target = match store.webhook_by_id(endpoint_id).await? {
                Some(endpoint) => Target {
                    url: reqwest::Url::parse(&endpoint.url).map_err(|e| format!("bad URL: {e}")),
                    keys: self.hooks.signing_keys(&endpoint, now).map_err(|e| {
                        tracing::error!(endpoint_id = %endpoint_id, error = %e, "webhooks: the endpoint's secret cannot be opened");
                        "the signing secret cannot be opened".to_owned()
                    }),
                },
                None => continue,
            };
            let target = Arc::new(target);
            for delivery in claimed {
                let slot = self.in_flight.enter(endpoint_id);
                let worker = Arc::clone(self);
                let target = Arc::clone(&target);
                tokio::spawn(async move {
                    worker.attempt(&target, delivery).await;
                    drop(slot);
                    worker.slot_freed.notify_one();
                });
            }
        }
        Ok(())
    }

    async fn attempt(&self, target: &Target, delivery: ClaimedDelivery) {
        let report = self.send(target, &delivery).await;
        metrics::histogram!("porteiro_webhook_delivery_seconds")
            .record(report.latency.as_secs_f64());
        let (status, error) = (report.status_code, report.error.clone());
        match self.hooks.record_attempt(&delivery, report).await {
            Ok(fate) => {
                let result = match fate {
                    AttemptFate::Delivered => "delivered",
                    AttemptFate::Retry(_) => "failed",
                    AttemptFate::Dead => "dead",
                };
                metrics::counter!("porteiro_webhook_deliveries_total", "result" => result)
                    .increment(1);
                match fate {
                    AttemptFate::Delivered => tracing::debug!(
                        delivery_id = delivery.id,
                        endpoint_id = %delivery.endpoint_id,
                        attempt = delivery.attempts,
                        "webhook delivered"
                    ),
                    AttemptFate::Retry(at) => tracing::info!(
                        delivery_id = delivery.id,
                        endpoint_id = %delivery.endpoint_id,
                        attempt = delivery.attempts,
                        status,
                        error = error.as_deref().unwrap_or(""),
                        retry_at = %at,
                        "webhook attempt failed; will retry"
                    ),
                    AttemptFate::Dead => tracing::warn!(
                        delivery_id = delivery.id,
                        endpoint_id = %delivery.endpoint_id,
                        attempt = delivery.attempts,
                        status,
                        error = error.as_deref().unwrap_or(""),
                        "webhook delivery failed for the last time: now a dead letter"
                    ),
                }
            }
            Err(e) => tracing::warn!(
                delivery_id = delivery.id,
                error = %e,
                "webhooks: recording an attempt failed; the delivery is retried when its lease ends"
            ),
        }
    }

    async fn send(&self, target: &Target, delivery: &ClaimedDelivery) -> AttemptReport {
        let started = Instant::now();
        let failed = |error: String, status: Option<u16>| AttemptReport {
            delivered: false,
            status_code: status,
            latency: started.elapsed(),
            error: Some(error),
        };
        let url = match &target.url {
            Ok(url) => url,
            Err(e) => return failed(e.clone(), None),
        };
        let keys = match &target.keys {
            Ok(keys) => keys,
            Err(e) => return failed(e.clone(), None),
        };
        if let Some(ip) = net::literal_address(url)
            && !net::address_allowed(ip, self.hooks.settings().allow_private)
        {
            return failed(
                format!("{ip} is an address the SSRF policy refuses; nothing was sent"),
                None,
            );
        }
        let body = payload(&delivery.event);
        let msg_id = message_id(delivery.event.id);
        let timestamp = self.hooks.now().timestamp();
        let signature = keys.signature_header(&msg_id, timestamp, &body);
        let request = self
            .client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body);
        match request.send().await {
            Ok(mut response) => {
                let status = response.status();
                // Drain a little (so a short answer leaves the connection reusable), keep none.
                let mut read = 0;
                while read < MAX_RESPONSE_BYTES {
                    match response.chunk().await {
                        Ok(Some(chunk)) => read += chunk.len(),
                        Ok(None) | Err(_) => break,
                    }
                }
                drop(response);
                let code = Some(status.as_u16());
                if status.is_success() {
                    AttemptReport {
                        delivered: true,
                        status_code: code,
                        latency: started.elapsed(),
                        error: None,
                    }
                } else if status.is_redirection() {
                    failed(
                        format!("HTTP {}: redirects are not followed", status.as_u16()),
                        code,
                    )
                } else {
                    failed(format!("HTTP {}", status.as_u16()), code)
                }
            }
            Err(e) => failed(describe(&e), None),
        }
    }
}

/// A short, URL-free description of a failed request.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".to_owned();
    }
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !causes.contains(&text) {
            causes.push(text);
        }
        source = s.source();
    }
    let kind = if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    if causes.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {}", causes.join(": "))
    }
}

/// Starts the worker for the life of the process.
///
/// # Errors
/// When the HTTP client cannot be built.
pub fn spawn(hooks: Arc<Webhooks>) -> anyhow::Result<()> {
    let worker = Arc::new(Worker::new(hooks)?);
    tokio::spawn(worker.run());
    Ok(())
}
