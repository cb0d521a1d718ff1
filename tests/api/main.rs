//! API integration tests: the real router on real PostgreSQL, a fresh
//! database per test.

mod audit;
mod auth;
mod bad_input;
mod cache;
mod chain;
mod cli;
mod cli_progress;
mod cloudevents;
mod concurrency;
mod consumers;
mod destructive;
mod door_history;
mod evidence;
mod fence;
mod flow;
mod gate;
mod geofence;
mod hostile;
mod idempotency;
mod injection;
mod maintenance;
mod mcp;
mod openapi;
mod outage;
mod read_models;
mod registry;
mod registry_import;
mod registry_jobs;
mod signin;
mod subscriptions;
mod support;
mod tools;
mod webhooks;
mod writer;
