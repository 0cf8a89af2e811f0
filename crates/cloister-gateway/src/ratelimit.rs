//! Request rate limits: per source address, per bearer token, and a tighter budget for
//! failed authentications per source address. Over a limit a request gets 429
//! `rate_limited` with `Retry-After` before any handler, store or keyvault work is done.
//!
//! The token bucket arithmetic is [`governor`]'s (GCRA). Keys are the source address (IPv6
//! by its /64, which one client usually holds whole) and the SHA-256 of the presented bearer
//! token (the hash authentication uses); idle keys are forgotten by
//! [`RateLimits::forget_idle`]. An address whose failure budget is spent is refused except
//! for tokens that authenticated in the last 15 minutes, so failures from one client behind a
//! shared address (NAT, proxy) do not lock out the others' working tokens.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cloister_types::ErrorCode;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::error::HttpError;
use crate::state::Shared;

/// One budget: a sustained rate and the burst allowed above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests replenished per period.
    pub per_period: NonZeroU32,
    /// Length of the period.
    pub period: Duration,
    /// Requests that may arrive at once.
    pub burst: NonZeroU32,
}

impl Rate {
    /// `n` per second with a burst of `burst`.
    pub fn per_second(n: NonZeroU32, burst: NonZeroU32) -> Self {
        Self {
            per_period: n,
            period: Duration::from_secs(1),
            burst,
        }
    }

    /// `n` per minute with a burst of `burst`.
    pub fn per_minute(n: NonZeroU32, burst: NonZeroU32) -> Self {
        Self {
            per_period: n,
            period: Duration::from_secs(60),
            burst,
        }
    }

    fn quota(self) -> Quota {
        let interval = self.period / self.per_period.get();
        Quota::with_period(interval.max(Duration::from_nanos(1)))
            .unwrap_or_else(|| Quota::per_second(self.per_period))
            .allow_burst(self.burst)
    }
}

/// The configured budgets; `None` turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateConfig {
    /// Requests per source address (every route but `/healthz`).
    pub per_address: Option<Rate>,
    /// Requests per bearer token.
    pub per_token: Option<Rate>,
    /// Failed authentications per source address; once spent, the address gets 429 on every
    /// authenticated route until the budget refills.
    pub auth_failures: Option<Rate>,
}

impl Default for RateConfig {
    /// Generous: far above what one client of a benchmark sends on this kind of machine
    /// (32 keep-alive clients of one token), tight only for failed authentications.
    fn default() -> Self {
        let n = |v: u32| NonZeroU32::new(v).unwrap_or(NonZeroU32::MIN);
        Self {
            per_address: Some(Rate::per_second(n(20_000), n(40_000))),
            per_token: Some(Rate::per_second(n(10_000), n(20_000))),
            auth_failures: Some(Rate::per_minute(n(60), n(30))),
        }
    }
}

/// Which budget refused a request (reported in the error's details).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Budget {
    /// The source address's requests.
    Address,
    /// The bearer token's requests.
    Token,
    /// The source address's failed authentications.
    AuthFailures,
}

impl Budget {
    fn as_str(self) -> &'static str {
        match self {
            Self::Address => "address",
            Self::Token => "token",
            Self::AuthFailures => "authFailures",
        }
    }
}

/// A refusal: which budget and when to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// The budget that is spent.
    pub budget: Budget,
    /// How long until one more request fits.
    pub retry_after: Duration,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let secs = self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0);
        let secs = secs.max(1);
        let what = match self.budget {
            Budget::Address => "requests from this address",
            Budget::Token => "requests with this token",
            Budget::AuthFailures => "failed authentications from this address",
        };
        let mut resp = HttpError::new(
            ErrorCode::RateLimited,
            format!("too many {what}; retry after {secs} s"),
        )
        .details(serde_json::json!({
            "budget": self.budget.as_str(),
            "retryAfterSeconds": secs,
        }))
        .into_response();
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        resp
    }
}

/// The live limiters of one gateway.
pub struct RateLimits {
    per_address: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_token: Option<DefaultKeyedRateLimiter<[u8; 32]>>,
    auth_failures: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Addresses whose failure budget is spent, until when.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    clock: DefaultClock,
}

/// The key of an address: IPv4 whole, IPv6 by its /64.
pub(crate) fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut seg = v6.segments();
                seg[4..].fill(0);
                IpAddr::V6(seg.into())
            }
        },
    }
}

impl RateLimits {
    /// Limiters for `cfg`.
    pub fn new(cfg: RateConfig) -> Self {
        Self {
            per_address: cfg
                .per_address
                .map(|r| governor::RateLimiter::keyed(r.quota())),
            per_token: cfg
                .per_token
                .map(|r| governor::RateLimiter::keyed(r.quota())),
            auth_failures: cfg
                .auth_failures
                .map(|r| governor::RateLimiter::keyed(r.quota())),
            blocked: Mutex::new(HashMap::new()),
            clock: DefaultClock::default(),
        }
    }

    fn wait(&self, not_until: &governor::NotUntil<<DefaultClock as Clock>::Instant>) -> Duration {
        not_until.wait_time_from(self.clock.now())
    }

    /// Checks (and spends from) the budgets of a request from `ip` presenting `token_hash`.
    /// `proven` says the token authenticated recently: such a request is not refused for
    /// its address's failed authentications (someone else's, behind the same NAT or proxy).
    pub fn check(
        &self,
        ip: IpAddr,
        token_hash: Option<&[u8; 32]>,
        proven: bool,
    ) -> Result<(), Refused> {
        let ip = address_key(ip);
        if let Some(l) = &self.per_address {
            l.check_key(&ip).map_err(|n| Refused {
                budget: Budget::Address,
                retry_after: self.wait(&n),
            })?;
        }
        if !proven && let Some(until) = self.blocked_until(ip) {
            return Err(Refused {
                budget: Budget::AuthFailures,
                retry_after: until.saturating_duration_since(Instant::now()),
            });
        }
        if let (Some(l), Some(hash)) = (&self.per_token, token_hash) {
            l.check_key(hash).map_err(|n| Refused {
                budget: Budget::Token,
                retry_after: self.wait(&n),
            })?;
        }
        Ok(())
    }

    fn blocked_until(&self, ip: IpAddr) -> Option<Instant> {
        let mut blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        match blocked.get(&ip) {
            Some(&until) if until > Instant::now() => Some(until),
            Some(_) => {
                blocked.remove(&ip);
                None
            }
            None => None,
        }
    }

    /// Records a failed authentication from `ip`; once its budget is spent the address is
    /// refused until one more failure would fit again.
    pub fn auth_failed(&self, ip: IpAddr) {
        let ip = address_key(ip);
        let Some(l) = &self.auth_failures else { return };
        if let Err(n) = l.check_key(&ip) {
            let until = Instant::now() + self.wait(&n);
            self.blocked
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(ip, until);
        }
    }

    /// Drops the state of keys whose budget is full again (called periodically).
    pub fn forget_idle(&self) {
        for l in [&self.per_address, &self.auth_failures]
            .into_iter()
            .flatten()
        {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.per_token {
            l.retain_recent();
            l.shrink_to_fit();
        }
        let now = Instant::now();
        self.blocked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, until| *until > now);
    }
}

/// How long a token that authenticated stays exempt from its address's failure block.
const PROVEN_FOR: Duration = Duration::from_secs(15 * 60);

/// Middleware: applies the budgets before the handler and counts its 401s as failures.
/// `/healthz` is exempt so a load balancer's probe is never throttled.
pub async fn limit(State(state): State<Shared>, req: Request, next: Next) -> Response {
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let Some(ip) = ip else {
        // Served without a peer address (in-process tests): no per-address state exists.
        return next.run(req).await;
    };
    // The same token, however the header spells it, has one key: the hash authentication
    // looks it up by.
    let token_hash = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(crate::auth::bearer_token)
        .map(crate::auth::token_hash);
    let proven = token_hash
        .as_ref()
        .is_some_and(|h| state.auth.recently_authenticated(h, PROVEN_FOR));
    if let Err(refused) = state.rate.check(ip, token_hash.as_ref(), proven) {
        state.metrics.rate_limited.inc();
        return refused.into_response();
    }
    let resp = next.run(req).await;
    if resp.status() == StatusCode::UNAUTHORIZED {
        state.rate.auth_failed(ip);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(v: u32) -> NonZeroU32 {
        NonZeroU32::new(v).unwrap()
    }

    #[test]
    fn a_spent_token_budget_refuses_with_a_retry_time() {
        let limits = RateLimits::new(RateConfig {
            per_address: None,
            per_token: Some(Rate::per_minute(nz(60), nz(3))),
            auth_failures: None,
        });
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let (a, b) = ([1u8; 32], [2u8; 32]);
        for _ in 0..3 {
            limits.check(ip, Some(&a), false).unwrap();
        }
        let refused = limits.check(ip, Some(&a), false).unwrap_err();
        assert_eq!(refused.budget, Budget::Token);
        assert!(refused.retry_after > Duration::ZERO);
        assert!(refused.retry_after <= Duration::from_secs(1));
        // Another token is not affected.
        limits.check(ip, Some(&b), false).unwrap();
    }

    #[test]
    fn failures_block_the_address_and_ipv6_counts_by_its_64() {
        let limits = RateLimits::new(RateConfig {
            per_address: None,
            per_token: None,
            auth_failures: Some(Rate::per_minute(nz(1), nz(2))),
        });
        let one: IpAddr = "2001:db8::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        let other: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        for _ in 0..3 {
            limits.auth_failed(one);
        }
        let refused = limits.check(same_64, None, false).unwrap_err();
        assert_eq!(refused.budget, Budget::AuthFailures);
        assert!(refused.retry_after > Duration::from_secs(10));
        limits.check(other, None, false).unwrap();
        limits.forget_idle();
        assert!(
            limits.check(one, None, false).is_err(),
            "a block outlives cleanup"
        );
        // A token that proved itself recently is not refused for others' failures.
        limits.check(one, Some(&[7u8; 32]), true).unwrap();
    }

    #[test]
    fn the_response_carries_retry_after_and_the_code() {
        let resp = Refused {
            budget: Budget::Address,
            retry_after: Duration::from_millis(1500),
        }
        .into_response();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "2");
    }
}
