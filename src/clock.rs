//! The service's clock, injectable so tests and timers can fix time.

use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

/// Where "now" comes from.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;

    /// The manual clock behind this one, when it is one (`DISPATCH_CLOCK=manual:…`):
    /// only then is `POST /v1/admin/clock` served.
    fn manual(&self) -> Option<&ManualClock> {
        None
    }
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that stands still until advanced (tests, deterministic scenarios).
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock {
            now: Mutex::new(start),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
    }

    /// Sets the clock.
    pub fn set(&self, to: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn manual(&self) -> Option<&ManualClock> {
        Some(self)
    }
}

/// The `DISPATCH_CLOCK` setting: `system` (the default), or `manual:<RFC 3339>`
/// for deterministic scenarios (a clock that stands still at that time until
/// an admin moves it with `POST /v1/admin/clock`). Never for production.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockSetting {
    /// The system clock.
    System,
    /// A [`ManualClock`] starting at this time.
    Manual(DateTime<Utc>),
}

impl ClockSetting {
    /// The clock this setting asks for.
    pub fn build(self) -> std::sync::Arc<dyn Clock> {
        match self {
            ClockSetting::System => std::sync::Arc::new(SystemClock),
            ClockSetting::Manual(start) => std::sync::Arc::new(ManualClock::new(start)),
        }
    }
}

impl std::str::FromStr for ClockSetting {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() || s == "system" {
            return Ok(ClockSetting::System);
        }
        match s.strip_prefix("manual:") {
            Some(start) => DateTime::parse_from_rfc3339(start.trim())
                .map(|t| ClockSetting::Manual(t.with_timezone(&Utc)))
                .map_err(|e| {
                    format!("`manual:` needs an RFC 3339 time (manual:2026-11-20T22:00:00Z): {e}")
                }),
            None => Err("expected `system` or `manual:<RFC 3339 time>`".to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_setting_parses() {
        assert_eq!("system".parse::<ClockSetting>(), Ok(ClockSetting::System));
        assert_eq!("".parse::<ClockSetting>(), Ok(ClockSetting::System));
        let t = DateTime::parse_from_rfc3339("2026-11-20T22:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            "manual:2026-11-20T22:00:00Z".parse::<ClockSetting>(),
            Ok(ClockSetting::Manual(t))
        );
        assert!("manual:yesterday".parse::<ClockSetting>().is_err());
        assert!("fast".parse::<ClockSetting>().is_err());
        assert!(ClockSetting::System.build().manual().is_none());
        let clock = ClockSetting::Manual(t).build();
        clock.manual().unwrap().advance(Duration::minutes(5));
        assert_eq!(clock.now(), t + Duration::minutes(5));
    }
}
