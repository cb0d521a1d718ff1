//! Latency percentiles (nearest rank) over microsecond samples.

use std::time::Duration;

/// A summary of latency samples, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Summary {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

/// Microsecond samples.
#[derive(Debug, Clone, Default)]
pub struct Samples(Vec<u32>);

impl Samples {
    /// Empty.
    pub fn new() -> Self {
        Samples(Vec::new())
    }

    /// Adds one duration.
    pub fn push(&mut self, d: Duration) {
        self.0.push(d.as_micros().min(u32::MAX as u128) as u32);
    }

    /// Adds one sample in microseconds.
    pub fn push_micros(&mut self, us: u32) {
        self.0.push(us);
    }

    /// Appends another set.
    pub fn extend(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Percentiles in milliseconds.
    pub fn summary(&self) -> Summary {
        let mut v = self.0.clone();
        v.sort_unstable();
        if v.is_empty() {
            return Summary::default();
        }
        let rank = |p: f64| {
            let n = v.len();
            let idx = ((p / 100.0) * n as f64).ceil() as usize;
            v[idx.clamp(1, n) - 1] as f64 / 1000.0
        };
        Summary {
            count: v.len(),
            p50: rank(50.0),
            p95: rank(95.0),
            p99: rank(99.0),
            max: *v.last().expect("not empty") as f64 / 1000.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let mut s = Samples::new();
        for i in 1..=100 {
            s.push_micros(i * 1000);
        }
        let m = s.summary();
        assert_eq!((m.p50, m.p95, m.p99, m.max), (50.0, 95.0, 99.0, 100.0));
    }
}
