//! Sizes and durations of the three modes (full, `--quick`, `--smoke`) and
//! the phases `--only` selects.

use std::time::Duration;

use crate::BenchArgs;

/// Sizes and durations of one mode.
#[derive(Debug, Clone)]
pub(crate) struct Sizes {
    pub(crate) mode: &'static str,
    /// `--no-webhooks`: no webhook endpoint during the throughput loads.
    pub(crate) no_webhooks: bool,
    pub(crate) warmup: Duration,
    pub(crate) measure: Duration,
    pub(crate) clients: [usize; 2],
    pub(crate) rebuild_events: u64,
    pub(crate) audit_events: u64,
    pub(crate) audit_runs: usize,
    pub(crate) read_events: usize,
    pub(crate) read_samples: usize,
    pub(crate) soak: Duration,
    pub(crate) soak_clients: usize,
    pub(crate) soak_rate: f64,
    pub(crate) scale_small: u64,
    pub(crate) scale_large: u64,
    pub(crate) scale_clients: usize,
    pub(crate) scale_rate: f64,
    pub(crate) scale_warmup: Duration,
    pub(crate) scale_measure: Duration,
    pub(crate) interleave: usize,
    pub(crate) per_tx: u64,
    pub(crate) only: Vec<String>,
}

impl Sizes {
    /// Whether `--only` leaves `phase` in (no `--only`: every phase).
    pub(crate) fn wants(&self, phase: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p == phase)
    }

    /// The mode's sizes, with `--seconds` and `--only` applied.
    pub(crate) fn of(args: &BenchArgs) -> Sizes {
        let mut sizes = Sizes::of_mode(args);
        if let Some(secs) = args.seconds {
            sizes.measure = Duration::from_secs_f64(secs);
        }
        sizes.only = args.only.clone();
        sizes.no_webhooks = args.no_webhooks;
        sizes
    }

    fn of_mode(args: &BenchArgs) -> Sizes {
        let s = Duration::from_secs_f64;
        if args.smoke {
            Sizes {
                no_webhooks: false,
                mode: "smoke",
                warmup: s(0.2),
                measure: s(0.8),
                clients: [4, 8],
                rebuild_events: 2_000,
                audit_events: 300,
                audit_runs: 2,
                read_events: 20,
                read_samples: 10,
                soak: s(1.0),
                soak_clients: 4,
                soak_rate: 80.0,
                scale_small: 1_000,
                scale_large: 3_000,
                scale_clients: 4,
                scale_rate: 80.0,
                scale_warmup: s(0.2),
                scale_measure: s(0.8),
                interleave: 50,
                per_tx: 100_000,
                only: Vec::new(),
            }
        } else if args.quick {
            Sizes {
                no_webhooks: false,
                mode: "quick",
                warmup: s(2.0),
                measure: s(8.0),
                clients: [16, 64],
                rebuild_events: 200_000,
                audit_events: 10_000,
                audit_runs: 5,
                read_events: 200,
                read_samples: 300,
                soak: s(20.0),
                soak_clients: 8,
                soak_rate: 300.0,
                scale_small: 10_000,
                scale_large: 1_000_000,
                scale_clients: 8,
                scale_rate: 400.0,
                scale_warmup: s(2.0),
                scale_measure: s(8.0),
                interleave: 200,
                per_tx: 250_000,
                only: Vec::new(),
            }
        } else {
            Sizes {
                no_webhooks: false,
                mode: "full",
                warmup: s(5.0),
                measure: s(30.0),
                clients: [16, 64],
                rebuild_events: 1_000_000,
                audit_events: 10_000,
                audit_runs: 7,
                read_events: 200,
                read_samples: 2_000,
                soak: s(600.0),
                soak_clients: 8,
                soak_rate: 300.0,
                scale_small: 10_000,
                scale_large: 10_000_000,
                scale_clients: 8,
                scale_rate: 400.0,
                scale_warmup: s(5.0),
                scale_measure: s(30.0),
                interleave: 200,
                per_tx: 500_000,
                only: Vec::new(),
            }
        }
    }
}
