//! Every lower layer's error as the [`ApiError`] it answers.

use super::{database_unavailable, sqlx_unavailable, ApiError};
use crate::domain::job::JobError;
use crate::domain::registry::RegistryError;
use crate::store::StoreError;

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::UnknownIncidentType(value) => ApiError::UnknownIncidentType {
                value,
                field: "incident_type".into(),
            },
            other => ApiError::Job(other),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::UnknownIncidentType(value) => ApiError::UnknownIncidentType {
                value,
                field: "incident_type".into(),
            },
            other => ApiError::Registry(other),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict => ApiError::VersionConflict {
                expected: None,
                current: None,
            },
            StoreError::Database(db) => ApiError::from(db),
            StoreError::Batch(db) if sqlx_unavailable(&db) => ApiError::Unavailable,
            StoreError::Refused { code, message } if database_unavailable(&code, &message) => {
                ApiError::Unavailable
            }
            StoreError::WriterStopped => ApiError::Unavailable,
            other => ApiError::Internal(other.into()),
        }
    }
}

impl From<crate::tools::schemas::InputError> for ApiError {
    fn from(e: crate::tools::schemas::InputError) -> Self {
        use crate::tools::schemas::InputError as E;
        match e {
            E::UnknownTool(what) => ApiError::ToolNotAllowed(what),
            E::Invalid { detail, field } => ApiError::Validation { detail, field },
        }
    }
}

impl From<crate::tools::log::LogError> for ApiError {
    fn from(e: crate::tools::log::LogError) -> Self {
        match e {
            crate::tools::log::LogError::Database(db) => ApiError::from(db),
            other => ApiError::Internal(other.into()),
        }
    }
}

impl From<crate::read_models::ReadModelError> for ApiError {
    fn from(e: crate::read_models::ReadModelError) -> Self {
        use crate::read_models::ReadModelError as E;
        match e {
            E::Unknown(what) => ApiError::NotFound(what),
            E::Database(db) => ApiError::from(db),
            E::Store(store) => ApiError::from(store),
            other => ApiError::Internal(other.into()),
        }
    }
}

impl From<crate::subscriptions::SubscriptionError> for ApiError {
    fn from(e: crate::subscriptions::SubscriptionError) -> Self {
        use crate::subscriptions::SubscriptionError as E;
        match e {
            E::Database(db) => ApiError::from(db),
            other => ApiError::Internal(other.into()),
        }
    }
}

impl From<crate::subscriptions::webhooks::admin::WebhookError> for ApiError {
    fn from(e: crate::subscriptions::webhooks::admin::WebhookError) -> Self {
        use crate::subscriptions::webhooks::admin::WebhookError as E;
        match e {
            E::Validation { detail, field } => ApiError::Validation { detail, field },
            E::UrlRefused(m) => ApiError::WebhookUrlRefused(m),
            E::UnknownEventType(m) => ApiError::UnknownEventType(m),
            E::AlreadyRegistered(id) => ApiError::WebhookAlreadyRegistered(id),
            E::NotFound => ApiError::NotFound("no such webhook endpoint".into()),
            E::Database(db) => ApiError::from(db),
            E::Subscription(s) => ApiError::from(s),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if sqlx_unavailable(&e) {
            ApiError::Unavailable
        } else {
            ApiError::Internal(e.into())
        }
    }
}
