//! Per-key rate limits for tool calls (GCRA, crate `governor`): a sustained
//! rate per minute and a burst. In-process: each replica limits on its own,
//! so N replicas admit up to N times the rate (docs/06_tool_surface.md).

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

/// Keys tracked before idle ones are forgotten.
const SWEEP_ABOVE_KEYS: usize = 10_000;

/// The tool-call budget of every key.
pub struct ToolRateLimiter {
    limiter: Option<RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>>,
}

impl std::fmt::Debug for ToolRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolRateLimiter")
            .field("enabled", &self.limiter.is_some())
            .finish()
    }
}

impl ToolRateLimiter {
    /// `per_minute` sustained calls with bursts of `burst`; 0 per minute disables the limit.
    pub fn new(per_minute: u32, burst: u32) -> ToolRateLimiter {
        let limiter = NonZeroU32::new(per_minute).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_minute(rate).allow_burst(burst))
        });
        ToolRateLimiter { limiter }
    }

    /// Admits one call for `key`, or says how long until one would be admitted.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if limiter.len() > SWEEP_ABOVE_KEYS {
            limiter.retain_recent();
        }
        limiter
            .check_key(&key.to_string())
            .map_err(|not_until| not_until.wait_time_from(limiter.clock().now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refused_per_key() {
        let l = ToolRateLimiter::new(60, 3);
        for _ in 0..3 {
            assert!(l.check("a").is_ok());
        }
        let wait = l.check("a").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(l.check("b").is_ok(), "another key has its own budget");
    }

    #[test]
    fn zero_disables() {
        let l = ToolRateLimiter::new(0, 0);
        for _ in 0..1000 {
            assert!(l.check("a").is_ok());
        }
    }
}
