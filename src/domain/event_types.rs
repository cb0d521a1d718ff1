//! The event types the store can hold, by aggregate type, read from the
//! event enums themselves: a stored event is decoded by wrapping its payload
//! as `{"<event_type>": payload}` and deserializing the aggregate's event
//! enum (`store::repo::decode_stream`), so the enum's serde variant names
//! *are* the stored `event_type`s. serde hands a deserializer those names
//! when it asks for an enum; [`variants`] asks and keeps them. A variant
//! added to an enum is known here without a list to update.
//!
//! A webhook endpoint's filter names event types as `<aggregate
//! type>.<EventType>` (`job.JobOffered`), `<aggregate type>.*` or `*`;
//! [`check_filter`] refuses anything else.

use cqrs_es::Aggregate;
use serde::de::{self, Deserialize, Deserializer, Visitor};

use super::job::{Job, JobEvent};
use super::registry::{Customer, CustomerEvent, Door, DoorEvent, MaintenancePlan, PlanEvent};
use super::registry::{Site, SiteEvent};
use super::technician::{Technician, TechnicianEvent};

/// What the probe deserializer stops with: the enum's variant names when
/// serde asked for an enum.
#[derive(Debug)]
struct Stop(Option<&'static [&'static str]>);

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("probe")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Stop(None)
    }
}

/// A deserializer that holds no data: it answers an enum request with the
/// variant names serde passed, anything else with nothing.
struct Probe;

impl<'de> Deserializer<'de> for Probe {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop(None))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Stop> {
        Err(Stop(Some(variants)))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

/// The variant names of an externally tagged enum (empty for any other type).
pub fn variants<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    match T::deserialize(Probe) {
        Err(Stop(Some(names))) => names,
        _ => &[],
    }
}

/// Every aggregate type with its event types.
pub fn known() -> Vec<(&'static str, &'static [&'static str])> {
    vec![
        (Job::TYPE, variants::<JobEvent>()),
        (Technician::TYPE, variants::<TechnicianEvent>()),
        (Customer::TYPE, variants::<CustomerEvent>()),
        (Site::TYPE, variants::<SiteEvent>()),
        (Door::TYPE, variants::<DoorEvent>()),
        (MaintenancePlan::TYPE, variants::<PlanEvent>()),
    ]
}

/// Whether `(aggregate_type, event_type)` is an event the store can hold.
pub fn is_known(aggregate_type: &str, event_type: &str) -> bool {
    known()
        .iter()
        .any(|(a, events)| *a == aggregate_type && events.contains(&event_type))
}

/// Every known event type as a filter names it (`job.JobOffered`), sorted.
pub fn filter_names() -> Vec<String> {
    let mut names: Vec<String> = known()
        .into_iter()
        .flat_map(|(a, events)| events.iter().map(move |e| format!("{a}.{e}")))
        .collect();
    names.sort();
    names
}

/// Checks one filter entry: `*`, `<aggregate type>.*`, or a known
/// `<aggregate type>.<EventType>`. The error says what is wrong.
pub fn check_filter(entry: &str) -> Result<(), String> {
    if entry == "*" {
        return Ok(());
    }
    let shown: String = entry.chars().filter(|c| !c.is_control()).take(64).collect();
    let Some((aggregate, event)) = entry.split_once('.') else {
        return Err(format!(
            "`{shown}` is not `<aggregate type>.<EventType>`, `<aggregate type>.*` or `*`"
        ));
    };
    let known = known();
    let Some((_, events)) = known.iter().find(|(a, _)| *a == aggregate) else {
        let types: Vec<&str> = known.iter().map(|(a, _)| *a).collect();
        return Err(format!(
            "`{shown}`: no aggregate type `{}` (known: {})",
            aggregate.chars().take(64).collect::<String>(),
            types.join(", ")
        ));
    };
    if event == "*" || events.contains(&event) {
        Ok(())
    } else {
        Err(format!(
            "`{shown}` is not an event type this service records"
        ))
    }
}

/// Whether a filter (entries already checked) selects an event.
pub fn selects(filter: &[String], aggregate_type: &str, event_type: &str) -> bool {
    filter
        .iter()
        .any(|f| selects_one(f, aggregate_type, event_type))
}

/// Whether one filter entry (`*`, `job.*`, `job.JobOffered`) selects an event.
pub fn selects_one(entry: &str, aggregate_type: &str, event_type: &str) -> bool {
    entry == "*"
        || entry
            .split_once('.')
            .is_some_and(|(a, e)| a == aggregate_type && (e == "*" || e == event_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_types_come_from_the_enums() {
        let job = variants::<JobEvent>();
        assert!(job.contains(&"JobOpened") && job.contains(&"SlaBreached"));
        assert_eq!(job.len(), 27, "{job:?}");
        for destructive in crate::domain::job::DESTRUCTIVE_EVENTS {
            assert!(job.contains(destructive), "{destructive}");
        }
        assert!(variants::<TechnicianEvent>().contains(&"TechnicianRegistered"));
        assert!(variants::<PlanEvent>().len() >= 3);
        assert!(variants::<String>().is_empty(), "not an enum: nothing");
        assert!(is_known("customer", "CustomerRegistered"));
        assert!(is_known("maintenance_plan", variants::<PlanEvent>()[0]));
        assert!(!is_known("job", "CustomerRegistered"));
        assert!(filter_names().contains(&"job.JobOffered".to_string()));
    }

    #[test]
    fn filters_name_known_types_an_aggregate_or_everything() {
        for ok in ["*", "job.*", "job.JobOffered", "door.DoorRegistered"] {
            assert_eq!(check_filter(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "JobOffered",
            "job.",
            "job.JobTeleported",
            "jobs.JobOffered",
            "job.*.x",
            "**",
        ] {
            assert!(check_filter(bad).is_err(), "{bad}");
        }
        let f = vec!["job.JobOffered".to_string(), "site.*".to_string()];
        assert!(selects(&f, "job", "JobOffered"));
        assert!(!selects(&f, "job", "JobOpened"));
        assert!(selects(&f, "site", "SiteRetired"));
        assert!(selects(&["*".to_string()], "door", "DoorMoved"));
    }
}
