//! The keyring's and the MAC's unit tests.

use super::*;

#[test]
fn a_keyring_round_trips_and_never_shows_its_secrets() {
    let keys = ChainKeys::generate().rotated("k2");
    let text = keys.to_toml();
    let back = ChainKeys::from_toml(&text).unwrap();
    assert_eq!(back.active_id(), "k2");
    assert_eq!(back.public_key_hex(), keys.public_key_hex());
    let (id, mac) = keys.mac("job", "j1", 3, "abc");
    assert_eq!(id, "k2");
    assert_eq!(
        back.verify_mac("job", "j1", 3, "k2", "abc", Some(&mac)),
        Ok(())
    );
    let debug = format!("{keys:?}");
    for secret in keys.hmac.values() {
        assert!(!debug.contains(&hex::encode(&secret.secret)));
    }
    assert!(!debug.contains(&hex::encode(keys.signing.to_bytes())));
}

#[test]
fn a_mac_binds_its_stream_sequence_key_and_hash() {
    let keys = ChainKeys::generate();
    let k = keys.active_id().to_string();
    let (_, mac) = keys.mac("job", "j1", 3, "abc");
    let m = Some(mac.as_str());
    assert_eq!(keys.verify_mac("job", "j1", 3, &k, "abc", m), Ok(()));
    for (t, id, seq, hash) in [
        ("technician", "j1", 3, "abc"),
        ("job", "j2", 3, "abc"),
        ("job", "j1", 4, "abc"),
        ("job", "j1", 3, "abd"),
    ] {
        assert_eq!(
            keys.verify_mac(t, id, seq, &k, hash, m),
            Err(MacFailure::Mismatch)
        );
    }
    assert_eq!(
        keys.verify_mac("job", "j1", 3, &k, "abc", None),
        Err(MacFailure::Mismatch)
    );
    assert_eq!(
        keys.verify_mac("job", "j1", 3, "nope", "abc", m),
        Err(MacFailure::UnknownKey)
    );
}

#[test]
fn signatures_verify_only_with_a_trusted_key() {
    let keys = ChainKeys::generate();
    let sig = keys.sign(b"heads");
    assert!(keys.verify_signature(&keys.public_key_hex(), b"heads", &sig));
    assert!(!keys.verify_signature(&keys.public_key_hex(), b"heads!", &sig));
    let other = ChainKeys::generate();
    assert!(!other.verify_signature(&keys.public_key_hex(), b"heads", &sig));
}

#[test]
fn file_and_environment_merge_and_conflicts_are_refused() {
    let k1 = ChainKeys::generate();
    let k2 = k1.rotated("k2");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ring.toml");
    std::fs::write(&file, k1.to_toml()).unwrap();
    let merged = ChainKeys::from_sources(Some(&file), Some(&k2.to_toml()))
        .unwrap()
        .unwrap();
    assert_eq!(merged.active_id(), "k2");
    assert_eq!(merged.key_ids().count(), 2);
    let clash = ChainKeys::generate();
    let clash = clash.to_toml().replace(clash.active_id(), k1.active_id());
    assert!(ChainKeys::from_sources(Some(&file), Some(&clash)).is_err());
    assert!(ChainKeys::from_sources(None, None).unwrap().is_none());
}

#[test]
fn the_first_run_creates_a_private_keyring_and_later_runs_reuse_it() {
    let data = tempfile::tempdir().unwrap();
    assert!(load_keyring(None, None, data.path(), false)
        .unwrap()
        .is_none());
    let (keys, source) = load_keyring(None, None, data.path(), true)
        .unwrap()
        .unwrap();
    let path = default_keyring_path(data.path());
    assert_eq!(source, KeyringSource::Created(path.clone()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        let dir = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir & 0o077, 0, "{dir:o}");
    }
    let (again, source) = load_keyring(None, None, data.path(), true)
        .unwrap()
        .unwrap();
    assert_eq!(source, KeyringSource::DataDir(path));
    assert_eq!(again.active_id(), keys.active_id());
    assert_eq!(again.public_key_hex(), keys.public_key_hex());
    // Nothing but the keyring is left in its folder.
    let files = std::fs::read_dir(data.path().join("keys")).unwrap().count();
    assert_eq!(files, 1);
    // A configured keyring wins and nothing is created.
    let other = tempfile::tempdir().unwrap();
    let (configured, source) = load_keyring(None, Some(&keys.to_toml()), other.path(), true)
        .unwrap()
        .unwrap();
    assert_eq!(source, KeyringSource::Configured);
    assert_eq!(configured.active_id(), keys.active_id());
    assert!(!default_keyring_path(other.path()).exists());
}
