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

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::MatchedPath;
use axum::http::{Method, Request, Response};
use metrics::{SharedString, counter, describe_counter};
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
    let mut text = installed.handle.render();
    text.push_str(&render_http());
    text
}

/// Counters of one thread group: its own cache lines, so threads on different cores never
/// write to the same one.
#[repr(align(128))]
struct Shard {
    /// Requests by method and status class.
    requests: [[AtomicU64; STATUS_CLASSES.len()]; METHODS.len()],
    /// Latency observations by method and bucket (the last one past every bound: `+Inf`).
    buckets: [[AtomicU64; LATENCY_BUCKETS.len() + 1]; METHODS.len()],
    /// Total latency by method, in nanoseconds.
    nanos: [AtomicU64; METHODS.len()],
}

/// Shards per series: more than the cores of the machines we run on, so threads rarely share.
const SHARDS: usize = 4;

thread_local! {
    /// This thread's shard.
    static SHARD: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS
    };
}

/// The HTTP figures of one route template: counted per thread shard with relaxed atomics, summed
/// and written out only when `/metrics` is scraped ([`render_http`]). Recording a request takes
/// three uncontended atomic additions and no allocation, lock or clock read beyond the timer's.
struct RouteSeries {
    route: SharedString,
    shards: [Shard; SHARDS],
}

impl RouteSeries {
    fn new(route: SharedString) -> Self {
        Self {
            route,
            shards: std::array::from_fn(|_| Shard {
                requests: Default::default(),
                buckets: Default::default(),
                nanos: Default::default(),
            }),
        }
    }

    fn record(&self, method: usize, status: usize, elapsed: Duration) {
        let shard = &self.shards[SHARD.with(|s| *s)];
        shard.requests[method][status].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        let bucket = LATENCY_BUCKETS.partition_point(|bound| *bound < secs);
        shard.buckets[method][bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        shard.nanos[method].fetch_add(nanos, Ordering::Relaxed);
    }

    /// Appends this series' samples to the two families' bodies.
    fn render(&self, requests: &mut String, latency: &mut String) {
        use std::fmt::Write as _;
        let sum = |f: &dyn Fn(&Shard) -> u64| self.shards.iter().map(f).sum::<u64>();
        let route = escape_label(&self.route);
        for (m, method) in METHODS.iter().enumerate() {
            for (c, class) in STATUS_CLASSES.iter().enumerate() {
                let n = sum(&|s| s.requests[m][c].load(Ordering::Relaxed));
                if n > 0 {
                    let _ = writeln!(
                        requests,
                        "{HTTP_REQUESTS}{{route=\"{route}\",method=\"{method}\",status=\"{class}\"}} {n}"
                    );
                }
            }
            let counts: Vec<u64> = (0..=LATENCY_BUCKETS.len())
                .map(|b| sum(&|s| s.buckets[m][b].load(Ordering::Relaxed)))
                .collect();
            let total: u64 = counts.iter().sum();
            if total == 0 {
                continue;
            }
            let labels = format!("route=\"{route}\",method=\"{method}\"");
            let mut cumulative = 0;
            for (bound, n) in LATENCY_BUCKETS.iter().zip(&counts) {
                cumulative += n;
                let _ = writeln!(
                    latency,
                    "{HTTP_DURATION}_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let nanos = sum(&|s| s.nanos[m].load(Ordering::Relaxed));
            let _ = writeln!(
                latency,
                "{HTTP_DURATION}_bucket{{{labels},le=\"+Inf\"}} {total}"
            );
            #[allow(clippy::cast_precision_loss)]
            let seconds = nanos as f64 / 1e9;
            let _ = writeln!(latency, "{HTTP_DURATION}_sum{{{labels}}} {seconds}");
            let _ = writeln!(latency, "{HTTP_DURATION}_count{{{labels}}} {total}");
        }
    }
}

/// A label value in the text format: backslash, double quote and line feed escaped.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The HTTP families in the text format (from the series, see [`RouteSeries`]).
fn render_http() -> String {
    let http = http_metrics();
    let mut requests = String::new();
    let mut latency = String::new();
    http.unmatched.render(&mut requests, &mut latency);
    http.overflow.render(&mut requests, &mut latency);
    let routes: Vec<&'static RouteSeries> = http
        .routes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .values()
        .copied()
        .collect();
    for series in routes {
        series.render(&mut requests, &mut latency);
    }
    format!(
        "# HELP {HTTP_REQUESTS} HTTP requests answered, by route template, method and status class.\n\
         # TYPE {HTTP_REQUESTS} counter\n{requests}\n\
         # HELP {HTTP_DURATION} Time from receiving an HTTP request to its response, by route template and method.\n\
         # TYPE {HTTP_DURATION} histogram\n{latency}\n"
    )
}

/// Every route's handles. Routes are few and fixed: each gets its series once, leaked (at most
/// [`MAX_ROUTES`]), and every thread keeps its own small map from the route template's address to
/// it, so a request touches no lock and no counter shared with other threads to find its series.
struct HttpMetrics {
    routes: Mutex<HashMap<Box<str>, &'static RouteSeries>>,
    unmatched: RouteSeries,
    overflow: RouteSeries,
}

fn http_metrics() -> &'static HttpMetrics {
    static HTTP: OnceLock<HttpMetrics> = OnceLock::new();
    HTTP.get_or_init(|| {
        // Handles must come from our recorder, not the no-op one before it.
        installed();
        HttpMetrics {
            routes: Mutex::default(),
            unmatched: RouteSeries::new(SharedString::const_str(UNMATCHED)),
            overflow: RouteSeries::new(SharedString::const_str(OTHER_ROUTE)),
        }
    })
}

thread_local! {
    /// This thread's route series by the address and length of the template's text (axum's
    /// `MatchedPath` of a route is one allocation for the router's life).
    static SERIES_BY_TEMPLATE: RefCell<Vec<(usize, usize, &'static RouteSeries)>> =
        const { RefCell::new(Vec::new()) };
}

impl HttpMetrics {
    /// The series of a matched route template.
    fn series(&'static self, template: &str) -> &'static RouteSeries {
        let key = (template.as_ptr() as usize, template.len());
        // The text is compared too: a router dropped and rebuilt (tests) may reuse an address.
        let cached = SERIES_BY_TEMPLATE.with_borrow(|cache| {
            cache
                .iter()
                .find(|(at, len, series)| (*at, *len) == key && &*series.route == template)
                .map(|(_, _, series)| *series)
        });
        if let Some(series) = cached {
            return series;
        }
        let series = self.register(template);
        SERIES_BY_TEMPLATE.with_borrow_mut(|cache| {
            cache.retain(|(at, len, _)| (*at, *len) != key);
            if cache.len() < MAX_ROUTES {
                cache.push((key.0, key.1, series));
            }
        });
        series
    }

    fn register(&'static self, template: &str) -> &'static RouteSeries {
        let mut routes = self
            .routes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(series) = routes.get(template) {
            return series;
        }
        if routes.len() >= MAX_ROUTES {
            return &self.overflow;
        }
        let series: &'static RouteSeries = Box::leak(Box::new(RouteSeries::new(
            SharedString::from_owned(template.to_owned()),
        )));
        routes.insert(template.into(), series);
        series
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
    /// The series of the route the request being served matched, set by [`RouteTag`].
    static ROUTE: Cell<Option<&'static RouteSeries>>;
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
        inner: TaskLocalFuture<Cell<Option<&'static RouteSeries>>, F>,
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
            let series = this
                .inner
                .take_value()
                .and_then(Cell::into_inner)
                .unwrap_or(&http_metrics().unmatched);
            series.record(
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
            let series = http_metrics().series(path.as_str());
            // Outside a request served through HttpMetricsLayer there is no slot: nothing to do.
            let _ = ROUTE.try_with(|slot| slot.set(Some(series)));
        }
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_for_the_text_format() {
        assert_eq!(escape_label("/api/users/{id}"), "/api/users/{id}");
        assert_eq!(escape_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }

    #[test]
    fn a_series_renders_cumulative_buckets_sum_and_count() {
        let series = RouteSeries::new(SharedString::const_str("/api/x/{id}"));
        series.record(0, 1, Duration::from_micros(300));
        series.record(0, 1, Duration::from_millis(3));
        series.record(0, 3, Duration::from_secs(20));
        let (mut requests, mut latency) = (String::new(), String::new());
        series.render(&mut requests, &mut latency);
        assert!(requests.contains(&format!(
            "{HTTP_REQUESTS}{{route=\"/api/x/{{id}}\",method=\"GET\",status=\"2xx\"}} 2\n"
        )));
        assert!(requests.contains("status=\"4xx\"} 1\n"));
        let labels = "route=\"/api/x/{id}\",method=\"GET\"";
        for (le, n) in [
            ("0.0005", 1),
            ("0.001", 1),
            ("0.005", 2),
            ("10", 2),
            ("+Inf", 3),
        ] {
            let line = format!("{HTTP_DURATION}_bucket{{{labels},le=\"{le}\"}} {n}\n");
            assert!(latency.contains(&line), "{line} in {latency}");
        }
        assert!(latency.contains(&format!("{HTTP_DURATION}_count{{{labels}}} 3\n")));
        assert!(
            latency.contains(&format!("{HTTP_DURATION}_sum{{{labels}}} 20.0033\n")),
            "{latency}"
        );
        assert!(!latency.contains("method=\"POST\""));
    }

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
