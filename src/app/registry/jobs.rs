//! Jobs at registered doors: `open_job` with a `door_id` takes its site,
//! door and client from the registry; with `register`, a new caller's site
//! and door are registered first, in one transaction, under ids derived
//! from the caller and the idempotency key (so a retry finds them and goes
//! on to the same job).

use std::sync::OnceLock;

use sqlx::{PgConnection, Row};

use super::{index, RegistryCommand};
use crate::app::commands::derived_id;
use crate::app::{App, Caller, RequestMeta};
use crate::domain::job::{Door, JobCommand, JobError, OpenJob, Site};
use crate::domain::registry::{DoorCommand, Kind, RegistryError, SiteCommand};
use crate::error::{ApiError, Result};
use crate::tools::allowlist::Allowlist;

/// How a new job's door is known in `job_doors`: a registered door by its
/// id (`door_id`) and, for the jobs opened before the registry, by the
/// text they were opened with (`site_text`, `door_text`: the site's
/// reference and the door's tag, or the job's own text).
#[derive(Debug, Clone, Default)]
pub struct DoorKeys {
    /// The registered door.
    pub door_id: Option<String>,
    /// A site's id as text.
    pub site_text: String,
    /// A door's id as text.
    pub door_text: String,
}

fn shipped() -> &'static Allowlist {
    static LIST: OnceLock<Allowlist> = OnceLock::new();
    LIST.get_or_init(|| Allowlist::builtin().expect("the shipped allowlist is valid"))
}

fn invalid(field: &str, problem: &'static str) -> ApiError {
    ApiError::Job(JobError::Validation {
        field: field.into(),
        problem,
    })
}

impl App {
    /// Registers the site and door an `open_job` names in `register`, and
    /// points the command at the door (`door_id`). The caller's role must
    /// be allowed `register_site` (when a site is registered) and
    /// `register_door`, as if it had called them.
    pub(crate) async fn register_at_call(
        &self,
        caller: &Caller,
        meta: &RequestMeta,
        command: &mut JobCommand,
    ) -> Result<()> {
        let JobCommand::OpenJob(c) = command else {
            return Ok(());
        };
        let Some(reg) = c.register.take() else {
            return Ok(());
        };
        if c.door_id.is_some() {
            return Err(invalid("register", "give door_id or register, not both"));
        }
        let mut needed = vec!["register_door"];
        if reg.site.is_some() {
            needed.push("register_site");
        }
        for name in needed {
            if !shipped().tool_allowed(name, caller.role) {
                return Err(ApiError::Forbidden(format!(
                    "role {} may not {name}",
                    caller.role.as_str()
                )));
            }
        }
        let mut tx = self.pool.begin().await?;
        index::lock(&mut tx).await?;
        let mut new_site = None;
        if let Some(mut site) = reg.site {
            let id = site
                .site_id
                .clone()
                .unwrap_or_else(|| derived_id(caller, meta, "site"));
            site.site_id = Some(id.clone());
            if index::find(&mut tx, Kind::Site, &id).await?.is_none() {
                self.registry_in(
                    &mut tx,
                    caller,
                    meta,
                    None,
                    RegistryCommand::Site(SiteCommand::Register(site)),
                )
                .await?;
            }
            new_site = Some(id);
        }
        let mut door = reg.door.at(new_site);
        let id = door
            .door_id
            .clone()
            .unwrap_or_else(|| derived_id(caller, meta, "door"));
        door.door_id = Some(id.clone());
        if index::find(&mut tx, Kind::Door, &id).await?.is_none() {
            self.registry_in(
                &mut tx,
                caller,
                meta,
                None,
                RegistryCommand::Door(DoorCommand::Register(door)),
            )
            .await?;
        }
        tx.commit().await?;
        crate::store::wake_projectors(&self.pool);
        c.door_id = Some(id);
        Ok(())
    }
}

/// Fills an `open_job`'s site, door and client from the registry when it
/// names a `door_id` (which must be registered, with its site, and not
/// retired); answers the keys its related jobs are found by.
pub async fn resolve_door(conn: &mut PgConnection, c: &mut OpenJob) -> Result<DoorKeys> {
    let Some(door_id) = c.door_id.clone() else {
        if c.site.id.is_empty() || c.door.id.is_empty() || c.client_id.is_empty() {
            return Err(invalid(
                "door_id",
                "give door_id (a registered door), register (a new one), or client_id, site and door",
            ));
        }
        return Ok(DoorKeys {
            door_id: None,
            site_text: c.site.id.clone(),
            door_text: c.door.id.clone(),
        });
    };
    if !c.site.id.is_empty() || !c.door.id.is_empty() {
        return Err(invalid(
            "door_id",
            "a registered door's site and door come from the registry: give door_id or site and door, not both",
        ));
    }
    let not_found = || {
        ApiError::Registry(RegistryError::NotFound {
            kind: Kind::Door,
            id: door_id.chars().take(200).collect(),
        })
    };
    if !crate::app::storable_id(&door_id) {
        return Err(not_found());
    }
    let row = sqlx::query(
        "SELECT d.retired AS door_retired, d.entry AS door, d.site_id, d.customer_id, \
                s.retired AS site_retired, s.entry AS site \
         FROM registry_entries d JOIN registry_entries s ON s.kind = 'site' AND s.id = d.site_id \
         WHERE d.kind = 'door' AND d.id = $1",
    )
    .bind(&door_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(not_found)?;
    let site_id: String = row.try_get("site_id")?;
    if row.try_get::<bool, _>("door_retired")? {
        return Err(RegistryError::Retired {
            kind: Kind::Door,
            id: door_id,
        }
        .into());
    }
    if row.try_get::<bool, _>("site_retired")? {
        return Err(RegistryError::Retired {
            kind: Kind::Site,
            id: site_id,
        }
        .into());
    }
    let door: serde_json::Value = row.try_get("door")?;
    let site: serde_json::Value = row.try_get("site")?;
    let text = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    c.site = Site {
        id: site_id.clone(),
        name: text(&site, "name"),
        address: text(&site, "address"),
    };
    c.door = Door {
        id: door_id.clone(),
        location: text(&door, "location"),
    };
    if c.client_id.is_empty() {
        c.client_id = row.try_get("customer_id")?;
    }
    let (reference, tag) = (text(&site, "reference"), text(&door, "tag"));
    Ok(DoorKeys {
        door_id: Some(door_id),
        // Jobs opened before the registry, at the site's reference and the
        // door's tag, are this door's too.
        site_text: if reference.is_empty() || tag.is_empty() {
            String::new()
        } else {
            reference
        },
        door_text: tag,
    })
}
