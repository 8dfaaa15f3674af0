//! Per-tenant rate limiting of the REST API (`http.rate_limit`): one token bucket per
//! authenticated tenant, so one noisy tenant is answered 429 `rate_limited` with `Retry-After`
//! while the others are served as before. The probes and the OpenAPI document are never
//! limited, and a request without a valid token passes through untouched (it is refused with
//! 401 by its handler; counting it against the tenant its unverified claims name would let
//! anyone exhaust another tenant's budget).
//!
//! The buckets are a map behind one mutex, held only for the arithmetic of one bucket. The
//! map stays bounded: a bucket that has refilled to its burst is indistinguishable from a new
//! one, so such buckets are dropped whenever the map has doubled since the last sweep.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::Problem;
use crate::app::authentication::bearer_token;
use crate::app::App;
use crate::config::RateLimitConfig;

/// Paths served to anyone, whatever their rate: liveness, readiness and the document.
const UNLIMITED_PATHS: [&str; 3] = ["/healthz", "/readyz", "/api/v1/openapi.json"];

/// The smallest map size at which stale buckets are swept.
const MIN_SWEEP_AT: usize = 1024;

/// The daemon's per-tenant limiter; cheap to clone (the buckets are shared). Disabled when
/// `per_second` is 0.
#[derive(Clone)]
pub struct RateLimiter {
    inner: Option<Arc<Limiter>>,
}

struct Limiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<Buckets>,
}

struct Buckets {
    by_tenant: HashMap<String, Bucket>,
    sweep_at: usize,
}

/// Tokens left at `updated`; refills at `per_second` up to `burst`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    pub fn new(config: &RateLimitConfig) -> RateLimiter {
        if config.per_second == 0 {
            return RateLimiter::disabled();
        }
        RateLimiter {
            inner: Some(Arc::new(Limiter {
                per_second: f64::from(config.per_second),
                // A burst below one request would refuse everything.
                burst: f64::from(config.burst.max(1)),
                buckets: Mutex::new(Buckets {
                    by_tenant: HashMap::new(),
                    sweep_at: MIN_SWEEP_AT,
                }),
            })),
        }
    }

    /// No limit at all.
    pub fn disabled() -> RateLimiter {
        RateLimiter { inner: None }
    }

    /// Takes one request from `tenant`'s bucket at `now`; when it is empty, how long until it
    /// holds a token again.
    pub fn check(&self, tenant: &str, now: Instant) -> Result<(), Duration> {
        let Some(limiter) = &self.inner else {
            return Ok(());
        };
        let mut buckets = limiter.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if !buckets.by_tenant.contains_key(tenant) {
            buckets.sweep(limiter, now);
        }
        let bucket = buckets
            .by_tenant
            .entry(tenant.to_owned())
            .or_insert(Bucket {
                tokens: limiter.burst,
                updated: now,
            });
        bucket.refill(limiter, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let missing = 1.0 - bucket.tokens;
            Err(Duration::from_secs_f64(missing / limiter.per_second))
        }
    }

    /// How many tenants have a bucket (for tests of the bound).
    pub fn tenants(&self) -> usize {
        self.inner.as_ref().map_or(0, |limiter| {
            let buckets = limiter.buckets.lock().unwrap_or_else(|e| e.into_inner());
            buckets.by_tenant.len()
        })
    }
}

impl Bucket {
    fn refill(&mut self, limiter: &Limiter, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * limiter.per_second).min(limiter.burst);
        self.updated = self.updated.max(now);
    }
}

impl Buckets {
    /// Drops the buckets that have refilled completely, once the map has doubled since the
    /// last sweep (amortised O(1) per new tenant).
    fn sweep(&mut self, limiter: &Limiter, now: Instant) {
        if self.by_tenant.len() < self.sweep_at {
            return;
        }
        self.by_tenant.retain(|_, bucket| {
            let mut refilled = *bucket;
            refilled.refill(limiter, now);
            refilled.tokens < limiter.burst
        });
        self.sweep_at = (self.by_tenant.len() * 2).max(MIN_SWEEP_AT);
    }
}

/// The middleware: a request with a valid token is counted against its tenant.
pub async fn limit(
    State((app, limiter)): State<(App, RateLimiter)>,
    request: Request,
    next: Next,
) -> Response {
    if limiter.inner.is_none() || UNLIMITED_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let tenant = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token)
        .and_then(|token| app.auth.verify(token).ok())
        .map(|principal| principal.tenant_id);
    let Some(tenant) = tenant else {
        return next.run(request).await;
    };
    match limiter.check(&tenant, Instant::now()) {
        Ok(()) => next.run(request).await,
        Err(wait) => rate_limited(wait),
    }
}

/// 429 `rate_limited`, with `Retry-After` in whole seconds (at least 1, rounded up, so a
/// client that waits that long is served).
fn rate_limited(wait: Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let seconds = seconds.max(1);
    let problem = Problem {
        kind: "https://catalogd.dev/problems/rate_limited".into(),
        title: "Too many requests".into(),
        status: 429,
        detail: format!("This tenant's request rate is over its limit; retry in {seconds} s."),
        code: "rate_limited".into(),
        errors: None,
    };
    let mut response = problem.into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: u32, burst: u32) -> RateLimiter {
        RateLimiter::new(&RateLimitConfig { per_second, burst })
    }

    #[test]
    fn a_burst_then_the_rate() {
        let limiter = limiter(10, 5);
        let t0 = Instant::now();
        for _ in 0..5 {
            assert_eq!(limiter.check("acme", t0), Ok(()));
        }
        let wait = limiter.check("acme", t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        // Another tenant has its own bucket.
        assert_eq!(limiter.check("globex", t0), Ok(()));
        // One token back after 100 ms, and only one.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(limiter.check("acme", t1), Ok(()));
        assert!(limiter.check("acme", t1).is_err());
        // A long pause refills to the burst, no more.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..5 {
            assert_eq!(limiter.check("acme", t2), Ok(()));
        }
        assert!(limiter.check("acme", t2).is_err());
    }

    #[test]
    fn zero_disables() {
        let limiter = limiter(0, 0);
        let now = Instant::now();
        for _ in 0..10_000 {
            assert_eq!(limiter.check("acme", now), Ok(()));
        }
        assert_eq!(limiter.tenants(), 0);
    }

    #[test]
    fn refilled_buckets_are_evicted() {
        let limiter = limiter(100, 10);
        let t0 = Instant::now();
        for n in 0..10 * MIN_SWEEP_AT {
            limiter.check(&format!("t{n}"), t0).unwrap();
        }
        // All were used at t0: none is stale yet, so the map holds them all.
        assert_eq!(limiter.tenants(), 10 * MIN_SWEEP_AT);
        // A second later every one of them is full again, as good as new: once the map has
        // doubled since the last sweep (at 16 Ki buckets), they are dropped, and only the
        // buckets in use remain.
        let t1 = t0 + Duration::from_secs(1);
        for n in 0..7 * MIN_SWEEP_AT {
            limiter.check(&format!("u{n}"), t1).unwrap();
        }
        assert_eq!(limiter.tenants(), 7 * MIN_SWEEP_AT);
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        for (wait, header) in [
            (Duration::from_millis(1), "1"),
            (Duration::from_millis(1000), "1"),
            (Duration::from_millis(1001), "2"),
            (Duration::ZERO, "1"),
        ] {
            let response = rate_limited(wait);
            assert_eq!(response.status(), 429);
            assert_eq!(response.headers()[header::RETRY_AFTER], header, "{wait:?}");
            assert_eq!(
                response.headers()[header::CONTENT_TYPE],
                super::super::error::PROBLEM_CONTENT_TYPE
            );
        }
    }
}
