//! Dispatch policy: SLA hours and acknowledgement windows per priority.
//!
//! These are contract data (per client where given), not constants in code:
//! the service builds a [`DispatchPolicy`] from its configuration.

use std::collections::HashMap;

use chrono::Duration;
use serde::{Deserialize, Serialize};

/// Job priority: P1 emergency … P4 planned.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
pub enum Priority {
    /// Emergency.
    P1,
    /// Urgent.
    P2,
    /// Routine.
    P3,
    /// Planned (inspections, PM, quotes): by appointment.
    P4,
}

impl Priority {
    /// The wire name (`P1` … `P4`).
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::P1 => "P1",
            Priority::P2 => "P2",
            Priority::P3 => "P3",
            Priority::P4 => "P4",
        }
    }

    fn index(self) -> usize {
        match self {
            Priority::P1 => 0,
            Priority::P2 => 1,
            Priority::P3 => 2,
            Priority::P4 => 3,
        }
    }
}

/// Hours per priority, `None` meaning "by appointment" (no timer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaHours {
    /// Hours from the call to a technician on site, P1..P4.
    pub response: [Option<u32>; 4],
    /// Hours from the call to the work completed, P1..P4.
    pub completion: [Option<u32>; 4],
}

impl Default for SlaHours {
    fn default() -> Self {
        SlaHours {
            response: [Some(4), Some(24), Some(72), None],
            completion: [Some(24), Some(72), Some(240), None],
        }
    }
}

/// The policy the job aggregate consults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatchPolicy {
    /// Default SLA hours.
    pub sla: SlaHours,
    /// Per-client SLA hours, by `client_id`.
    pub clients: HashMap<String, SlaHours>,
    /// Minutes a technician has to answer an offer, P1..P4.
    pub ack_window_minutes: [u32; 4],
    /// A job with no check-in is at risk this many minutes before its response SLA.
    #[serde(default = "default_at_risk")]
    pub at_risk_minutes: u32,
}

fn default_at_risk() -> u32 {
    60
}

impl Default for DispatchPolicy {
    fn default() -> Self {
        DispatchPolicy {
            sla: SlaHours::default(),
            clients: HashMap::new(),
            ack_window_minutes: [15, 30, 120, 240],
            at_risk_minutes: default_at_risk(),
        }
    }
}

impl DispatchPolicy {
    fn hours_for(&self, client_id: &str) -> &SlaHours {
        self.clients.get(client_id).unwrap_or(&self.sla)
    }

    /// The response window for a client and priority.
    pub fn response_window(&self, client_id: &str, p: Priority) -> Option<Duration> {
        self.hours_for(client_id).response[p.index()].map(|h| Duration::hours(h.into()))
    }

    /// The completion window for a client and priority.
    pub fn completion_window(&self, client_id: &str, p: Priority) -> Option<Duration> {
        self.hours_for(client_id).completion[p.index()].map(|h| Duration::hours(h.into()))
    }

    /// How long a technician has to answer an offer at this priority.
    pub fn ack_window(&self, p: Priority) -> Duration {
        Duration::minutes(self.ack_window_minutes[p.index()].into())
    }
}
