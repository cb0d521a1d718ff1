//! Who issues a command: the actor, derived from the API key, never from a body.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The roles of the contract. `System` is the internal timer actor.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    PartialOrd,
    Ord,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The AI dispatch agent.
    Agent,
    /// A person at the dispatch desk.
    Dispatcher,
    /// A field technician, bound to one technician id.
    Technician,
    /// Read-only: event streams and verification.
    Auditor,
    /// Operators with every right.
    Admin,
    /// The service's own timers.
    System,
}

impl Role {
    /// Every role, in a stable order.
    pub const ALL: [Role; 6] = [
        Role::Agent,
        Role::Dispatcher,
        Role::Technician,
        Role::Auditor,
        Role::Admin,
        Role::System,
    ];

    /// The wire name of the role.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Dispatcher => "dispatcher",
            Role::Technician => "technician",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
            Role::System => "system",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// People who may decide approvals and take over any job.
    pub fn is_supervisor(self) -> bool {
        matches!(self, Role::Dispatcher | Role::Admin)
    }
}

/// What kind of actor: the audit record distinguishes agents, people and the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// An AI agent.
    Agent,
    /// A person.
    Person,
    /// The service itself.
    System,
}

/// The actor recorded on every event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Actor {
    /// Agent, person or system.
    pub kind: ActorKind,
    /// The key's name (or `system`).
    pub id: String,
    /// The key's role.
    pub role: Role,
    /// For technician keys: the technician the key is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub technician_id: Option<String>,
}

impl Actor {
    /// Builds an actor for a role; the kind follows from the role.
    pub fn new(role: Role, id: impl Into<String>) -> Self {
        let kind = match role {
            Role::Agent => ActorKind::Agent,
            Role::System => ActorKind::System,
            _ => ActorKind::Person,
        };
        Actor {
            kind,
            id: id.into(),
            role,
            technician_id: None,
        }
    }

    /// A technician actor bound to a technician id.
    pub fn technician(id: impl Into<String>, technician_id: impl Into<String>) -> Self {
        Actor {
            technician_id: Some(technician_id.into()),
            ..Actor::new(Role::Technician, id)
        }
    }

    /// The service's own timer actor.
    pub fn system() -> Self {
        Actor::new(Role::System, "system")
    }
}

/// A command as issued: by whom and when. The aggregate sees only this.
#[derive(Debug, Clone, PartialEq)]
pub struct Issued<C> {
    /// Who issued it (from the key).
    pub by: Actor,
    /// When (the service's clock, injectable for tests and timers).
    pub at: DateTime<Utc>,
    /// The command itself.
    pub command: C,
}

impl<C> Issued<C> {
    /// Wraps a command with its actor and time.
    pub fn new(by: Actor, at: DateTime<Utc>, command: C) -> Self {
        Issued { by, at, command }
    }
}
