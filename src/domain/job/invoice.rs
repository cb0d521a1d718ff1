//! The invoice a job's visits add up to: labor × rate, parts, trips.

use serde::{Deserialize, Serialize};

use super::events::{InvoiceLine, InvoiceLineKind};
use super::state::JobData;
use crate::domain::money::labor_cents;

/// Invoice lines and their total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema)]
pub struct Invoice {
    /// Itemized lines.
    pub lines: Vec<InvoiceLine>,
    /// Sum of the lines.
    pub total_cents: i64,
}

impl Invoice {
    /// The invoice for a job: per checked-out visit its labor and parts, and a
    /// trip charge for every visit that travelled or checked in.
    pub fn for_job(job: &JobData, trip_charge_cents: i64) -> Invoice {
        let mut lines = Vec::new();
        for v in &job.visits {
            let travelled = v.travel_started_at.is_some() || v.checked_in_at.is_some();
            if travelled && trip_charge_cents > 0 {
                lines.push(InvoiceLine {
                    kind: InvoiceLineKind::Trip,
                    description: format!("Trip charge, visit {}", v.number),
                    quantity: 1,
                    unit_cents: trip_charge_cents,
                    amount_cents: trip_charge_cents,
                });
            }
            if v.checked_out_at.is_some() {
                lines.push(InvoiceLine {
                    kind: InvoiceLineKind::Labor,
                    description: format!("Labor, visit {} ({} min)", v.number, v.labor_minutes),
                    quantity: v.labor_minutes,
                    unit_cents: v.labor_rate_cents,
                    amount_cents: labor_cents(v.labor_minutes, v.labor_rate_cents),
                });
                for p in &v.parts {
                    lines.push(InvoiceLine {
                        kind: InvoiceLineKind::Part,
                        description: format!("{} {}", p.part_number, p.description),
                        quantity: p.quantity,
                        unit_cents: p.unit_price_cents,
                        amount_cents: p.quantity.saturating_mul(p.unit_price_cents),
                    });
                }
            }
        }
        let total_cents = lines
            .iter()
            .map(|l| l.amount_cents)
            .fold(0i64, i64::saturating_add);
        Invoice { lines, total_cents }
    }
}
