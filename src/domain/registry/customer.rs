//! The `Customer` aggregate: who is billed — a direct customer, or an IFM
//! network's client billed through its IFM account — and its contacts.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::{check_contacts, check_id, check_opt, check_text, Facts, Kind, RegistryContact};
use super::{RegistryError, MAX_ID_BYTES, MAX_TEXT_BYTES};
use crate::domain::Issued;

/// How a customer is billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Billing {
    /// Billed directly.
    Direct,
    /// A client of an IFM network, billed through its IFM account.
    Ifm,
}

/// What is known of a customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerDetails {
    /// Name.
    pub name: String,
    /// How it is billed.
    pub billing: Billing,
    /// The IFM network's account for this client (required for `ifm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifm_account: Option<String>,
    /// Contacts.
    #[serde(default)]
    pub contacts: Vec<RegistryContact>,
}

impl CustomerDetails {
    fn check(&self) -> Result<(), RegistryError> {
        check_text("name", &self.name, MAX_TEXT_BYTES)?;
        check_opt("ifm_account", &self.ifm_account, MAX_ID_BYTES)?;
        if self.billing == Billing::Ifm && self.ifm_account.is_none() {
            return Err(RegistryError::Validation {
                field: "ifm_account".into(),
                problem: "required when billing is ifm",
            });
        }
        check_contacts("contacts", &self.contacts)
    }
}

/// `register_customer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterCustomer {
    /// Id; the service makes one when absent.
    #[serde(default)]
    pub customer_id: Option<String>,
    /// Name.
    pub name: String,
    /// How it is billed.
    pub billing: Billing,
    /// The IFM account (required for `ifm`).
    #[serde(default)]
    pub ifm_account: Option<String>,
    /// Contacts.
    #[serde(default)]
    pub contacts: Vec<RegistryContact>,
}

/// `update_customer`: the fields given replace the ones recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCustomer {
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// How it is billed.
    #[serde(default)]
    pub billing: Option<Billing>,
    /// The IFM account.
    #[serde(default)]
    pub ifm_account: Option<String>,
    /// Contacts (replaces the list).
    #[serde(default)]
    pub contacts: Option<Vec<RegistryContact>>,
}

/// `retire_customer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retire {
    /// Why.
    pub reason: String,
}

/// Every customer command.
#[derive(Debug, Clone, PartialEq)]
pub enum CustomerCommand {
    /// `register_customer`.
    Register(RegisterCustomer),
    /// `update_customer`.
    Update(UpdateCustomer),
    /// `retire_customer`.
    Retire(Retire),
}

/// Every customer event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CustomerEvent {
    /// Registered.
    CustomerRegistered {
        /// Id.
        customer_id: String,
        /// What is known.
        details: CustomerDetails,
    },
    /// Details replaced (the whole record as it now stands).
    CustomerUpdated {
        /// What is known now.
        details: CustomerDetails,
    },
    /// Retired: takes no new sites, doors or plans.
    CustomerRetired {
        /// Why.
        reason: String,
    },
}

impl DomainEvent for CustomerEvent {
    fn event_type(&self) -> String {
        match self {
            CustomerEvent::CustomerRegistered { .. } => "CustomerRegistered",
            CustomerEvent::CustomerUpdated { .. } => "CustomerUpdated",
            CustomerEvent::CustomerRetired { .. } => "CustomerRetired",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1.0".to_string()
    }
}

/// The customer aggregate.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Customer {
    /// Events applied.
    pub version: u64,
    /// Its id once registered.
    pub customer_id: Option<String>,
    /// What is known once registered.
    pub details: Option<CustomerDetails>,
    /// Whether it was retired.
    pub retired: bool,
}

impl Customer {
    /// Decides a command on the customer as it stands. Pure.
    pub fn decide(
        &self,
        cmd: &Issued<CustomerCommand>,
        facts: &Facts,
    ) -> Result<Vec<CustomerEvent>, RegistryError> {
        let current = || {
            self.details.as_ref().ok_or(RegistryError::NotFound {
                kind: Kind::Customer,
                id: String::new(),
            })
        };
        match &cmd.command {
            CustomerCommand::Register(c) => {
                if self.details.is_some() {
                    return Err(RegistryError::AlreadyExists {
                        kind: Kind::Customer,
                    });
                }
                let id = c.customer_id.clone().unwrap_or_default();
                check_id("customer_id", &id)?;
                let details = CustomerDetails {
                    name: c.name.clone(),
                    billing: c.billing,
                    ifm_account: c.ifm_account.clone(),
                    contacts: c.contacts.clone(),
                };
                details.check()?;
                Ok(vec![CustomerEvent::CustomerRegistered {
                    customer_id: id,
                    details,
                }])
            }
            CustomerCommand::Update(c) => {
                let mut details = current()?.clone();
                self.not_retired()?;
                if let Some(v) = &c.name {
                    details.name = v.clone();
                }
                if let Some(v) = c.billing {
                    details.billing = v;
                }
                if let Some(v) = &c.ifm_account {
                    details.ifm_account = Some(v.clone());
                }
                if let Some(v) = &c.contacts {
                    details.contacts = v.clone();
                }
                details.check()?;
                if Some(&details) == self.details.as_ref() {
                    return Ok(vec![]);
                }
                Ok(vec![CustomerEvent::CustomerUpdated { details }])
            }
            CustomerCommand::Retire(c) => {
                current()?;
                self.not_retired()?;
                check_text("reason", &c.reason, MAX_TEXT_BYTES)?;
                if facts.active_children > 0 {
                    return Err(RegistryError::HasActiveChildren {
                        count: facts.active_children,
                    });
                }
                Ok(vec![CustomerEvent::CustomerRetired {
                    reason: c.reason.clone(),
                }])
            }
        }
    }

    fn not_retired(&self) -> Result<(), RegistryError> {
        if self.retired {
            return Err(RegistryError::Retired {
                kind: Kind::Customer,
                id: self.customer_id.clone().unwrap_or_default(),
            });
        }
        Ok(())
    }
}

impl Customer {
    /// How one event changes it (`Aggregate::apply`).
    fn fold(&mut self, event: CustomerEvent) {
        self.version += 1;
        match event {
            CustomerEvent::CustomerRegistered {
                customer_id,
                details,
            } => {
                self.customer_id = Some(customer_id);
                self.details = Some(details);
            }
            CustomerEvent::CustomerUpdated { details } => self.details = Some(details),
            CustomerEvent::CustomerRetired { .. } => self.retired = true,
        }
    }
}

super::registry_aggregate!(Customer, "customer", CustomerCommand, CustomerEvent);
