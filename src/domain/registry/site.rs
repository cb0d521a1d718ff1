//! The `Site` aggregate: a place with doors — its address, coordinates and
//! check-in radius, its time zone, how to get in, who to ask, and the
//! customer it belongs to.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::customer::Retire;
use super::{active_parent, check_contacts, check_id, check_opt, check_text, Facts, Kind};
use super::{RegistryContact, RegistryError, MAX_ID_BYTES, MAX_TEXT_BYTES};
use crate::domain::geo::RADIUS_RANGE_M;
use crate::domain::Issued;

/// What is known of a site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteDetails {
    /// The customer it belongs to.
    pub customer_id: String,
    /// Name (e.g. "St. Mary's Hospital — East Wing").
    pub name: String,
    /// Street address.
    pub address: String,
    /// Latitude, degrees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    /// Longitude, degrees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
    /// The check-in geofence's radius around the coordinates, metres
    /// (25..5000; [`crate::domain::geo::DEFAULT_RADIUS_M`] when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geofence_radius_m: Option<u32>,
    /// IANA time zone (e.g. `America/Chicago`).
    pub time_zone: String,
    /// How to get in (loading dock, badge desk…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_notes: Option<String>,
    /// Site contacts.
    #[serde(default)]
    pub contacts: Vec<RegistryContact>,
    /// The client's own id for this site, as callers and work orders give
    /// it: jobs opened with a free-text `site.id` equal to it are this
    /// site's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

impl SiteDetails {
    fn check(&self) -> Result<(), RegistryError> {
        check_text("name", &self.name, MAX_TEXT_BYTES)?;
        check_text("address", &self.address, MAX_TEXT_BYTES)?;
        check_text("time_zone", &self.time_zone, 64)?;
        if self.time_zone.parse::<chrono_tz::Tz>().is_err() {
            return Err(RegistryError::Validation {
                field: "time_zone".into(),
                problem: "not an IANA time zone (e.g. America/Chicago)",
            });
        }
        let bad = |field: &str| RegistryError::Validation {
            field: field.into(),
            problem: "out of range",
        };
        match (self.latitude, self.longitude) {
            (Some(lat), _) if !(-90.0..=90.0).contains(&lat) => return Err(bad("latitude")),
            (_, Some(lon)) if !(-180.0..=180.0).contains(&lon) => return Err(bad("longitude")),
            (Some(_), None) | (None, Some(_)) => {
                return Err(RegistryError::Validation {
                    field: "latitude".into(),
                    problem: "give both latitude and longitude, or neither",
                })
            }
            _ => {}
        }
        if self
            .geofence_radius_m
            .is_some_and(|r| !RADIUS_RANGE_M.contains(&r))
        {
            return Err(RegistryError::Validation {
                field: "geofence_radius_m".into(),
                problem: "must be within 25..5000 (metres)",
            });
        }
        check_opt("access_notes", &self.access_notes, MAX_TEXT_BYTES)?;
        check_opt("reference", &self.reference, MAX_ID_BYTES)?;
        check_contacts("contacts", &self.contacts)
    }
}

/// `register_site`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterSite {
    /// Id; the service makes one when absent.
    #[serde(default)]
    pub site_id: Option<String>,
    /// The customer it belongs to.
    pub customer_id: String,
    /// Name.
    pub name: String,
    /// Street address.
    pub address: String,
    /// Latitude, degrees.
    #[serde(default)]
    pub latitude: Option<f64>,
    /// Longitude, degrees.
    #[serde(default)]
    pub longitude: Option<f64>,
    /// The check-in geofence's radius, metres (25..5000; default 150).
    #[serde(default)]
    pub geofence_radius_m: Option<u32>,
    /// IANA time zone.
    pub time_zone: String,
    /// How to get in.
    #[serde(default)]
    pub access_notes: Option<String>,
    /// Site contacts.
    #[serde(default)]
    pub contacts: Vec<RegistryContact>,
    /// The client's own id for this site.
    #[serde(default)]
    pub reference: Option<String>,
}

/// `update_site`: the fields given replace the ones recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSite {
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Street address.
    #[serde(default)]
    pub address: Option<String>,
    /// Latitude.
    #[serde(default)]
    pub latitude: Option<f64>,
    /// Longitude.
    #[serde(default)]
    pub longitude: Option<f64>,
    /// The check-in geofence's radius, metres (25..5000).
    #[serde(default)]
    pub geofence_radius_m: Option<u32>,
    /// IANA time zone.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// How to get in.
    #[serde(default)]
    pub access_notes: Option<String>,
    /// Site contacts (replaces the list).
    #[serde(default)]
    pub contacts: Option<Vec<RegistryContact>>,
    /// The client's own id for this site.
    #[serde(default)]
    pub reference: Option<String>,
}

/// Every site command.
#[derive(Debug, Clone, PartialEq)]
pub enum SiteCommand {
    /// `register_site`.
    Register(RegisterSite),
    /// `update_site`.
    Update(UpdateSite),
    /// `retire_site`.
    Retire(Retire),
}

/// Every site event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SiteEvent {
    /// Registered.
    SiteRegistered {
        /// Id.
        site_id: String,
        /// What is known.
        details: SiteDetails,
    },
    /// Details replaced (the whole record as it now stands).
    SiteUpdated {
        /// What is known now.
        details: SiteDetails,
    },
    /// Retired: takes no new doors or jobs.
    SiteRetired {
        /// Why.
        reason: String,
    },
}

impl DomainEvent for SiteEvent {
    fn event_type(&self) -> String {
        match self {
            SiteEvent::SiteRegistered { .. } => "SiteRegistered",
            SiteEvent::SiteUpdated { .. } => "SiteUpdated",
            SiteEvent::SiteRetired { .. } => "SiteRetired",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1.0".to_string()
    }
}

/// The site aggregate.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Site {
    /// Events applied.
    pub version: u64,
    /// Its id once registered.
    pub site_id: Option<String>,
    /// What is known once registered.
    pub details: Option<SiteDetails>,
    /// Whether it was retired.
    pub retired: bool,
}

impl Site {
    /// Decides a command on the site as it stands. Pure. `facts.parent`:
    /// the customer (`register_site`).
    pub fn decide(
        &self,
        cmd: &Issued<SiteCommand>,
        facts: &Facts,
    ) -> Result<Vec<SiteEvent>, RegistryError> {
        let current = || {
            self.details.as_ref().ok_or(RegistryError::NotFound {
                kind: Kind::Site,
                id: String::new(),
            })
        };
        match &cmd.command {
            SiteCommand::Register(c) => {
                if self.details.is_some() {
                    return Err(RegistryError::AlreadyExists { kind: Kind::Site });
                }
                let id = c.site_id.clone().unwrap_or_default();
                check_id("site_id", &id)?;
                check_id("customer_id", &c.customer_id)?;
                let details = SiteDetails {
                    customer_id: c.customer_id.clone(),
                    name: c.name.clone(),
                    address: c.address.clone(),
                    latitude: c.latitude,
                    longitude: c.longitude,
                    geofence_radius_m: c.geofence_radius_m,
                    time_zone: c.time_zone.clone(),
                    access_notes: c.access_notes.clone(),
                    contacts: c.contacts.clone(),
                    reference: c.reference.clone(),
                };
                details.check()?;
                active_parent(Kind::Customer, &c.customer_id, facts)?;
                Ok(vec![SiteEvent::SiteRegistered {
                    site_id: id,
                    details,
                }])
            }
            SiteCommand::Update(c) => {
                let mut d = current()?.clone();
                self.not_retired()?;
                let set = |to: &mut String, v: &Option<String>| {
                    if let Some(v) = v {
                        to.clone_from(v);
                    }
                };
                set(&mut d.name, &c.name);
                set(&mut d.address, &c.address);
                set(&mut d.time_zone, &c.time_zone);
                if c.latitude.is_some() || c.longitude.is_some() {
                    d.latitude = c.latitude;
                    d.longitude = c.longitude;
                }
                if c.geofence_radius_m.is_some() {
                    d.geofence_radius_m = c.geofence_radius_m;
                }
                if c.access_notes.is_some() {
                    d.access_notes.clone_from(&c.access_notes);
                }
                if let Some(v) = &c.contacts {
                    d.contacts = v.clone();
                }
                if c.reference.is_some() {
                    d.reference.clone_from(&c.reference);
                }
                d.check()?;
                if Some(&d) == self.details.as_ref() {
                    return Ok(vec![]);
                }
                Ok(vec![SiteEvent::SiteUpdated { details: d }])
            }
            SiteCommand::Retire(c) => {
                current()?;
                self.not_retired()?;
                check_text("reason", &c.reason, MAX_TEXT_BYTES)?;
                if facts.active_children > 0 {
                    return Err(RegistryError::HasActiveChildren {
                        count: facts.active_children,
                    });
                }
                Ok(vec![SiteEvent::SiteRetired {
                    reason: c.reason.clone(),
                }])
            }
        }
    }

    fn not_retired(&self) -> Result<(), RegistryError> {
        if self.retired {
            return Err(RegistryError::Retired {
                kind: Kind::Site,
                id: self.site_id.clone().unwrap_or_default(),
            });
        }
        Ok(())
    }
}

impl Site {
    /// How one event changes it (`Aggregate::apply`).
    fn fold(&mut self, event: SiteEvent) {
        self.version += 1;
        match event {
            SiteEvent::SiteRegistered { site_id, details } => {
                self.site_id = Some(site_id);
                self.details = Some(details);
            }
            SiteEvent::SiteUpdated { details } => self.details = Some(details),
            SiteEvent::SiteRetired { .. } => self.retired = true,
        }
    }
}

super::registry_aggregate!(Site, "site", SiteCommand, SiteEvent);
