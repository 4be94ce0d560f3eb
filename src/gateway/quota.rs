//! Quotas per principal (`--quota-requests-per-sec`, `--quota-publish-bytes-per-sec`):
//! one token bucket per principal and quota, from `governor`, each holding one second's
//! worth. A request over quota is refused before anything of it is applied, with the
//! time after which the same request would pass.
//!
//! The principal is the token's `sub`; a token without one, or any request with
//! `--auth none`, is its client's IP address.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio_util::sync::CancellationToken;

use super::error::{ErrorCode, GatewayError};
use crate::metrics::OverloadMetrics;

/// Who a quota is counted for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Principal(Arc<str>);

impl Principal {
    /// The token's subject when it has one, else the client's address (`unknown` for a
    /// connection without one, which only in-process callers make).
    pub fn new(sub: Option<&str>, peer: Option<IpAddr>) -> Principal {
        let name = match (sub, peer) {
            (Some(sub), _) => format!("sub:{sub}"),
            (None, Some(ip)) => format!("ip:{ip}"),
            (None, None) => "unknown".to_owned(),
        };
        Principal(name.into())
    }
}

/// The buckets of every principal; `None` where a quota is off.
pub struct Quotas {
    requests: Option<DefaultKeyedRateLimiter<Principal>>,
    requests_per_sec: u32,
    publish_bytes: Option<DefaultKeyedRateLimiter<Principal>>,
    publish_bytes_per_sec: u32,
    metrics: OverloadMetrics,
}

/// How often buckets that are full again (indistinguishable from new ones) are dropped, so
/// that memory follows the principals active in the last seconds, not every one ever seen.
const FORGET_EVERY: Duration = Duration::from_secs(10);

impl Quotas {
    /// Quotas with the given rates (0: unlimited).
    pub fn new(
        requests_per_sec: u32,
        publish_bytes_per_sec: u32,
        metrics: OverloadMetrics,
    ) -> Quotas {
        let bucket = |rate: u32| {
            NonZeroU32::new(rate).map(|rate| RateLimiter::keyed(Quota::per_second(rate)))
        };
        Quotas {
            requests: bucket(requests_per_sec),
            requests_per_sec,
            publish_bytes: bucket(publish_bytes_per_sec),
            publish_bytes_per_sec,
            metrics,
        }
    }

    /// Starts dropping idle buckets until `shutdown`; call within a Tokio runtime.
    pub fn start_housekeeping(self: &Arc<Self>, shutdown: CancellationToken) {
        if self.requests.is_none() && self.publish_bytes.is_none() {
            return;
        }
        let quotas = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(FORGET_EVERY);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = ticks.tick() => {}
                }
                let Some(quotas) = quotas.upgrade() else {
                    return;
                };
                for limiter in [&quotas.requests, &quotas.publish_bytes]
                    .into_iter()
                    .flatten()
                {
                    limiter.retain_recent();
                    limiter.shrink_to_fit();
                }
            }
        });
    }

    /// One HTTP request or WebSocket op of `principal`.
    pub fn charge_request(&self, principal: &Principal) -> Result<(), GatewayError> {
        let Some(limiter) = &self.requests else {
            return Ok(());
        };
        limiter.check_key(principal).map_err(|not_until| {
            self.refuse(
                "requests",
                format!(
                    "over the quota of {} requests per second (--quota-requests-per-sec)",
                    self.requests_per_sec
                ),
                not_until.wait_time_from(limiter.clock().now()),
            )
        })
    }

    /// `bytes` of records (key + value + headers) `principal` is about to publish.
    pub fn charge_publish(&self, principal: &Principal, bytes: usize) -> Result<(), GatewayError> {
        let (Some(limiter), Some(cells)) = (
            &self.publish_bytes,
            NonZeroU32::new(u32::try_from(bytes).unwrap_or(u32::MAX)),
        ) else {
            return Ok(());
        };
        match limiter.check_key_n(principal, cells) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(self.refuse(
                "publish_bytes",
                format!(
                    "over the quota of {} published bytes per second (--quota-publish-bytes-per-sec)",
                    self.publish_bytes_per_sec
                ),
                not_until.wait_time_from(limiter.clock().now()),
            )),
            // More than a whole second's worth: waiting would not help.
            Err(_) => Err(GatewayError::new(
                ErrorCode::BodyTooLarge,
                format!(
                    "{bytes} bytes of records in one request exceed the quota of {} bytes per second (--quota-publish-bytes-per-sec); send them in smaller requests",
                    self.publish_bytes_per_sec
                ),
            )),
        }
    }

    fn refuse(&self, quota: &str, message: String, wait: Duration) -> GatewayError {
        self.metrics.rate_limited.with_label_values(&[quota]).inc();
        // Never 0: a client told to wait 0 ms would spin.
        let wait = wait.max(Duration::from_millis(1));
        GatewayError::throttled(
            ErrorCode::RateLimited,
            format!("{message}; retry in {} ms", wait.as_millis()),
            wait,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quotas(requests: u32, bytes: u32) -> Quotas {
        let metrics = crate::metrics::Metrics::new(crate::metrics::LabelCaps {
            topics: 10,
            groups: 10,
        })
        .unwrap();
        Quotas::new(requests, bytes, metrics.overload.clone())
    }

    #[test]
    fn a_burst_of_one_seconds_worth_then_refusals_that_say_when() {
        let quotas = quotas(5, 0);
        let alice = Principal::new(Some("alice"), None);
        for _ in 0..5 {
            quotas.charge_request(&alice).unwrap();
        }
        let refused = quotas.charge_request(&alice).unwrap_err();
        assert_eq!(refused.code(), ErrorCode::RateLimited);
        let wait = refused.retry_after().unwrap();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(200),
            "{wait:?}"
        );
        // Another principal has a bucket of its own.
        quotas
            .charge_request(&Principal::new(Some("bob"), None))
            .unwrap();
        // Publish bytes are unlimited here.
        quotas.charge_publish(&alice, 1 << 30).unwrap();
    }

    #[test]
    fn publish_bytes_count_and_an_oversized_request_is_told_to_split() {
        let quotas = quotas(0, 1000);
        let ip = Principal::new(None, Some("10.0.0.1".parse().unwrap()));
        quotas.charge_publish(&ip, 600).unwrap();
        let refused = quotas.charge_publish(&ip, 600).unwrap_err();
        assert_eq!(refused.code(), ErrorCode::RateLimited);
        assert!(refused.retry_after().unwrap() >= Duration::from_millis(150));
        let oversized = quotas.charge_publish(&ip, 1001).unwrap_err();
        assert_eq!(oversized.code(), ErrorCode::BodyTooLarge);
        quotas.charge_publish(&ip, 0).unwrap();
    }
}
