//! Rebuilds the service when a migration is added: `sqlx::migrate!` embeds
//! the files of `migrations/` at compile time, and cargo does not see a new
//! file there on its own.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
