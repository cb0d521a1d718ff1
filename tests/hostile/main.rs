//! Hostile input (issue 9; `quality.md`, "bad input"): schemathesis over the
//! served OpenAPI document against the real binary, and the fuzz targets'
//! bodies (`e2e/fuzz/`) over their seeds and mutations. And the document as
//! third-party tools take it (issue 21): a client openapi-python-client
//! generates from it drives a job lifecycle unpatched; Redocly's lint finds
//! no error.
//!
//! `cargo test --test hostile` runs the quick form; `DISPATCH_HOSTILE=full
//! cargo test --test hostile -- --nocapture` the full one (thousands of
//! generated requests, every role). How to read the results and the figures
//! of the last full run: `docs/reliability.md`, "Hostile input".

mod decoders;
mod generated_client;
mod installs;
mod redocly;
mod schemathesis;

/// The service under test, started as the e2e harness starts it.
#[allow(dead_code)]
#[path = "../../e2e/harness/server.rs"]
mod server;
