//! Prometheus metrics: the process-wide recorder, the HTTP request metrics, and the scrape.
//!
//! The `metrics` facade has one global recorder per process. [`handle`] installs ours (the
//! Prometheus exporter, without its HTTP listener: `/metrics` is a route of ours) the first time
//! it is asked for, and every later caller — each application a test process starts — shares it.
//!
//! **HTTP metrics** cost a few atomic operations per request and no allocation of ours once a
//! route has been seen (the route layer below does make axum clone one more boxed service and box
//! one more future per matched request): [`HttpMetricsLayer`] (outermost) times the request and
//! counts it; the route
//! template comes from axum's `MatchedPath`, which only exists inside the router, so
//! [`RouteTagLayer`] (a route layer) hands it out through a task-local slot the outer layer
//! opened. Requests no route matched are labelled `unmatched`, never with their path. Counter
//! and histogram handles are registered once per (route, method, status class) and kept, so the
//! registry's label hashing and allocation happen once, not per request.
//!
//! **Scrape-time gauges** are set just before rendering: the domain's own
//! ([`porteiro_core::Auth::record_gauges`]), process metrics, and any [`ScrapeHooks`] the
//! composition root added.
//!
//! **Labels** are `&'static str` from fixed lists, or route templates of the router: never user
//! data, addresses, raw paths or anything else a client chooses.

use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::MatchedPath;
use axum::http::{Method, Request, Response};
use metrics::{Counter, Histogram, SharedString, counter, describe_counter, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use porteiro_core::Auth;
use tokio::task::futures::TaskLocalFuture;

/// Counter `{route, method, status}`: HTTP requests answered.
pub const HTTP_REQUESTS: &str = "porteiro_http_requests_total";
/// Histogram `{route, method}`: seconds from receiving a request to its response head.
pub const HTTP_DURATION: &str = "porteiro_http_request_duration_seconds";
/// Counter `{class}`: requests refused by a rate limit.
pub const RATE_LIMITED: &str = "porteiro_rate_limited_total";

/// The `route` label of a request no route matched.
pub const UNMATCHED: &str = "unmatched";
/// The `route` label once [`MAX_ROUTES`] templates are tracked (never reached by our router).
pub const OTHER_ROUTE: &str = "other";
/// Most distinct route templates tracked.
pub const MAX_ROUTES: usize = 512;

/// Latency buckets, in seconds: 0.5 ms to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The `method` label: the methods the API uses, everything else `other`.
const METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "other",
];
/// Buckets of the webhook delivery histogram, in seconds: 5 ms to the longest timeout (120 s).
const WEBHOOK_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
/// The `status` label.
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// How often histogram samples are folded into their buckets when nobody scrapes (they are
/// kept raw until then, so without this an unscraped server would grow without bound).
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

struct Installed {
    handle: PrometheusHandle,
    process: metrics_process::Collector,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

fn installed() -> &'static Installed {
    INSTALLED.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.to_owned()), LATENCY_BUCKETS)
            .expect("invariant: the bucket list is not empty")
            .set_buckets_for_metric(
                Matcher::Full(porteiro_core::metrics::name::WEBHOOK_DELIVERY_SECONDS.to_owned()),
                WEBHOOK_BUCKETS,
            )
            .expect("invariant: the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!(
                "another metrics recorder is installed: /metrics shows only what is recorded here"
            );
        }
        let process = metrics_process::Collector::default();
        process.describe();
        porteiro_core::metrics::describe();
        describe_counter!(
            HTTP_REQUESTS,
            "HTTP requests answered, by route template, method and status class."
        );
        describe_histogram!(
            HTTP_DURATION,
            metrics::Unit::Seconds,
            "Time from receiving an HTTP request to its response, by route template and method."
        );
        describe_counter!(
            RATE_LIMITED,
            "Requests refused by a rate limit, by limiter class."
        );
        for class in crate::guard::rate_limit::CLASS_LABELS {
            counter!(RATE_LIMITED, "class" => *class).absolute(0);
        }
        Installed { handle, process }
    })
}

/// The process-wide Prometheus recorder, installed on first use.
#[must_use]
pub fn handle() -> &'static PrometheusHandle {
    &installed().handle
}

/// Folds histogram samples into their buckets every [`UPKEEP_INTERVAL`], forever. The
/// composition root spawns it once per running server.
pub async fn upkeep() {
    let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        handle().run_upkeep();
    }
}

/// A gauge (or anything) to bring up to date just before each scrape.
pub type ScrapeFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

type Hook = Arc<dyn Fn() -> ScrapeFuture + Send + Sync>;

/// Work run before each scrape renders, in order: e.g. a backlog count read from the store and
/// set with `metrics::gauge!`. Cheap to clone.
#[derive(Clone, Default)]
pub struct ScrapeHooks(Vec<Hook>);

impl std::fmt::Debug for ScrapeHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ScrapeHooks").field(&self.0.len()).finish()
    }
}

impl ScrapeHooks {
    /// Adds a hook: `hook()` is called and awaited on every scrape. It should be quick (a
    /// scrape waits for it) and record only labels from fixed lists.
    pub fn add<F>(&mut self, hook: impl Fn() -> F + Send + Sync + 'static)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.0.push(Arc::new(move || Box::pin(hook())));
    }
}

/// Brings every scrape-time gauge up to date and renders the Prometheus text format.
pub async fn render(auth: &Auth, hooks: &ScrapeHooks) -> String {
    let installed = installed();
    auth.record_gauges().await;
    for hook in &hooks.0 {
        hook().await;
    }
    installed.process.collect();
    installed.handle.run_upkeep();
    installed.handle.render()
}

/// The metric handles of one route template, registered on first use.
struct RouteSeries {
    route: SharedString,
    requests: [[OnceLock<Counter>; STATUS_CLASSES.len()]; METHODS.len()],
    latency: [OnceLock<Histogram>; METHODS.len()],
}

impl RouteSeries {
    fn new(route: SharedString) -> Self {
        Self {
            route,
            requests: Default::default(),
            latency: Default::default(),
        }
    }

    fn record(&self, method: usize, status: usize, elapsed: Duration) {
        self.requests[method][status]
            .get_or_init(|| {
                counter!(
                    HTTP_REQUESTS,
                    "route" => self.route.clone(),
                    "method" => METHODS[method],
                    "status" => STATUS_CLASSES[status]
                )
            })
            .increment(1);
        self.latency[method]
            .get_or_init(|| {
                metrics::histogram!(
                    HTTP_DURATION,
                    "route" => self.route.clone(),
                    "method" => METHODS[method]
                )
            })
            .record(elapsed.as_secs_f64());
    }
}

/// Every route's handles. Routes are few and fixed, so after warm-up every request takes the
/// read lock only.
struct HttpMetrics {
    routes: RwLock<HashMap<Box<str>, RouteSeries>>,
    unmatched: RouteSeries,
    overflow: RouteSeries,
}

fn http_metrics() -> &'static HttpMetrics {
    static HTTP: OnceLock<HttpMetrics> = OnceLock::new();
    HTTP.get_or_init(|| {
        // Handles must come from our recorder, not the no-op one before it.
        installed();
        HttpMetrics {
            routes: RwLock::default(),
            unmatched: RouteSeries::new(SharedString::const_str(UNMATCHED)),
            overflow: RouteSeries::new(SharedString::const_str(OTHER_ROUTE)),
        }
    })
}

impl HttpMetrics {
    fn record(&self, route: Option<&MatchedPath>, method: usize, status: usize, took: Duration) {
        let Some(route) = route else {
            self.unmatched.record(method, status, took);
            return;
        };
        let path = route.as_str();
        {
            let routes = self
                .routes
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(series) = routes.get(path) {
                series.record(method, status, took);
                return;
            }
        }
        let mut routes = self
            .routes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if routes.len() >= MAX_ROUTES && !routes.contains_key(path) {
            drop(routes);
            self.overflow.record(method, status, took);
            return;
        }
        routes
            .entry(path.into())
            .or_insert_with(|| RouteSeries::new(SharedString::from_owned(path.to_owned())))
            .record(method, status, took);
    }
}

fn method_index(method: &Method) -> usize {
    [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
    ]
    .iter()
    .position(|m| m == method)
    .unwrap_or(METHODS.len() - 1)
}

fn status_index(status: u16) -> usize {
    usize::from(status / 100).clamp(1, STATUS_CLASSES.len()) - 1
}

tokio::task_local! {
    /// The matched route template of the request being served, set by [`RouteTag`].
    static ROUTE: Cell<Option<MatchedPath>>;
}

/// Times and counts every request (the outermost layer of the stack).
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpMetricsLayer;

impl<S> tower::Layer<S> for HttpMetricsLayer {
    type Service = HttpMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        http_metrics();
        HttpMetricsService { inner }
    }
}

/// See [`HttpMetricsLayer`].
#[derive(Debug, Clone)]
pub struct HttpMetricsService<S> {
    inner: S,
}

impl<S, B, R> tower::Service<Request<B>> for HttpMetricsService<S>
where
    S: tower::Service<Request<B>, Response = Response<R>>,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = HttpMetricsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let method = method_index(req.method());
        HttpMetricsFuture {
            inner: ROUTE.scope(Cell::new(None), self.inner.call(req)),
            start: Instant::now(),
            method,
        }
    }
}

pin_project_lite::pin_project! {
    /// See [`HttpMetricsLayer`].
    pub struct HttpMetricsFuture<F> {
        #[pin]
        inner: TaskLocalFuture<Cell<Option<MatchedPath>>, F>,
        start: Instant,
        method: usize,
    }
}

impl<F, R, E> Future for HttpMetricsFuture<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let result = std::task::ready!(this.inner.as_mut().poll(cx));
        if let Ok(response) = &result {
            let route = this.inner.take_value().and_then(Cell::into_inner);
            http_metrics().record(
                route.as_ref(),
                *this.method,
                status_index(response.status().as_u16()),
                this.start.elapsed(),
            );
        }
        Poll::Ready(result)
    }
}

/// A route layer: tells [`HttpMetricsLayer`] which route template matched.
#[derive(Debug, Clone, Copy, Default)]
pub struct RouteTagLayer;

impl<S> tower::Layer<S> for RouteTagLayer {
    type Service = RouteTag<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RouteTag { inner }
    }
}

/// See [`RouteTagLayer`].
#[derive(Debug, Clone)]
pub struct RouteTag<S> {
    inner: S,
}

impl<S, B> tower::Service<Request<B>> for RouteTag<S>
where
    S: tower::Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if let Some(path) = req.extensions().get::<MatchedPath>() {
            // Outside a request served through HttpMetricsLayer there is no slot: nothing to do.
            let _ = ROUTE.try_with(|slot| slot.set(Some(path.clone())));
        }
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_and_statuses_map_to_fixed_labels() {
        assert_eq!(METHODS[method_index(&Method::GET)], "GET");
        assert_eq!(METHODS[method_index(&Method::DELETE)], "DELETE");
        let custom = Method::from_bytes(b"PROPFIND").expect("a valid method token");
        assert_eq!(METHODS[method_index(&custom)], "other");
        assert_eq!(STATUS_CLASSES[status_index(101)], "1xx");
        assert_eq!(STATUS_CLASSES[status_index(204)], "2xx");
        assert_eq!(STATUS_CLASSES[status_index(404)], "4xx");
        assert_eq!(STATUS_CLASSES[status_index(503)], "5xx");
        assert_eq!(STATUS_CLASSES[status_index(999)], "5xx");
    }
}
