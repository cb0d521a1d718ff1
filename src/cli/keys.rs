//! `dispatch-api keys create|revoke|list`.

use serde_json::json;

use super::pool;
use crate::app::keys;
use crate::config::Config;
use crate::domain::Role;

/// `dispatch-api keys create`: prints the key alone on stdout.
pub async fn create_key(
    config: &Config,
    role: Role,
    name: &str,
    technician: Option<&str>,
) -> anyhow::Result<()> {
    let (pool, _database) = pool(config).await?;
    let key = keys::create_key(&pool, role, name, technician).await?;
    println!("{key}");
    Ok(())
}

/// `dispatch-api keys revoke`.
pub async fn revoke_key(config: &Config, name: &str) -> anyhow::Result<()> {
    let (pool, _database) = pool(config).await?;
    keys::revoke_key(&pool, name).await?;
    eprintln!("revoked {name}");
    Ok(())
}

/// `dispatch-api keys list [--json]`: every key, active and revoked, one
/// line each (or `{"keys": […]}`, `schemas/cli/keys_list.schema.json`);
/// never a key or its hash.
pub async fn list_keys(config: &Config, as_json: bool) -> anyhow::Result<()> {
    let (pool, _database) = pool(config).await?;
    let list = keys::list_keys(&pool).await?;
    if as_json {
        println!("{}", json!({ "keys": list }));
        return Ok(());
    }
    println!(
        "{:<32} {:<11} {:<20} {:<20} revoked",
        "name", "role", "technician", "created"
    );
    for k in &list {
        println!(
            "{:<32} {:<11} {:<20} {:<20} {}",
            k.name,
            k.role,
            k.technician_id.as_deref().unwrap_or("-"),
            k.created_at.format("%Y-%m-%d %H:%M:%S"),
            k.revoked_at.map_or("-".to_string(), |t| t
                .format("%Y-%m-%d %H:%M:%S")
                .to_string())
        );
    }
    Ok(())
}
