//! The closed toolset: the declarative allowlist every access check derives from.

pub mod allowlist;
