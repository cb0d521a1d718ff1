//! Canonical JSON and the envelope hash.
//!
//! Canonical form: objects with keys sorted by their UTF-8 bytes, no
//! insignificant white space, numbers and strings as serde_json writes them.
//! It does not depend on the order the database returns keys in.

use std::io::Write;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The `prev_hash` of a stream's first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Writes `v` in canonical form.
pub fn canonical_json(v: &Value) -> String {
    let mut out = Vec::new();
    write_canonical(v, &mut out).expect("writing to memory does not fail");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// Writes `v` in canonical form to `out`: object keys sorted by bytes,
/// strings and numbers exactly as serde_json writes them.
pub fn write_canonical<W: Write + ?Sized>(v: &Value, out: &mut W) -> std::io::Result<()> {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.write_all(b"{")?;
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                write_str(k, out)?;
                out.write_all(b":")?;
                write_canonical(&map[k.as_str()], out)?;
            }
            out.write_all(b"}")
        }
        Value::Array(items) => {
            out.write_all(b"[")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                write_canonical(item, out)?;
            }
            out.write_all(b"]")
        }
        other => serde_json::to_writer(out, other).map_err(std::io::Error::from),
    }
}

/// Writes a JSON string (escaped as serde_json escapes it).
pub fn write_str<W: Write + ?Sized>(s: &str, out: &mut W) -> std::io::Result<()> {
    serde_json::to_writer(out, s).map_err(std::io::Error::from)
}

/// A SHA-256 being fed through `io::Write` (no intermediate string).
#[derive(Default)]
pub struct Hasher(Sha256);

impl Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Hasher {
    /// The hex digest.
    pub fn hex(self) -> String {
        hex::encode(self.0.finalize())
    }
}

/// SHA-256 (hex) of a value's canonical form.
pub fn sha256_canonical(v: &Value) -> String {
    let mut h = Hasher::default();
    write_canonical(v, &mut h).expect("hashing does not fail");
    h.hex()
}

/// SHA-256 (hex) of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_does_not_matter() {
        let a = json!({"b": 1, "a": {"y": [1, 2], "x": "s"}});
        let b: Value = serde_json::from_str(r#"{"a":{"x":"s","y":[1,2]},"b":1}"#).unwrap();
        assert_eq!(canonical_json(&a), r#"{"a":{"x":"s","y":[1,2]},"b":1}"#);
        assert_eq!(sha256_canonical(&a), sha256_canonical(&b));
    }

    /// The canonical writer before it streamed (kept here as the reference).
    fn reference(v: &Value, out: &mut String) {
        match v {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String((*k).clone()).to_string());
                    out.push(':');
                    reference(&map[k.as_str()], out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    reference(item, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }

    #[test]
    fn streaming_writer_matches_the_reference() {
        let v = json!({"z": [1, -74.0, 2.5e-8, 1e300, null, true, false], "é": "\u{1}\t\"\\/\u{2028}", "": {}, "a": [[], {"b": "c"}], "n": -0, "u": 18446744073709551615u64});
        let mut expected = String::new();
        reference(&v, &mut expected);
        assert_eq!(canonical_json(&v), expected);
        assert_eq!(sha256_canonical(&v), sha256_hex(expected.as_bytes()));
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(canonical_json(&json!({"k\"": "a\nb"})), r#"{"k\"":"a\nb"}"#);
    }
}
