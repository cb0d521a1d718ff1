//! Canonical JSON and the envelope hash (`envelope_hash`: what every
//! event's `hash` is the SHA-256 of).
//!
//! Canonical form: objects with keys sorted by their UTF-8 bytes, no
//! insignificant white space, numbers and strings as serde_json writes them.
//! It does not depend on the order the database returns keys in.

use std::io::Write;

use serde_json::{Map, Value};
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

/// An event's envelope members besides its payload and metadata: where it
/// is, what it is, and the hash it links to. What [`hash_input`],
/// [`envelope_hash`] and [`envelope_hash_text`] take with the payload and
/// the metadata.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// The stream's aggregate type (`job`, `technician`, …).
    pub aggregate_type: &'a str,
    /// The stream's id.
    pub aggregate_id: &'a str,
    /// The event's place in its stream, from 1.
    pub sequence: i64,
    /// The event's id (hyphenated UUID).
    pub event_id: &'a str,
    /// Its type (`JobOpened`, …).
    pub event_type: &'a str,
    /// Its payload's version.
    pub event_version: &'a str,
    /// The previous event's `hash` ([`GENESIS_HASH`] for the first).
    pub prev_hash: &'a str,
}

/// The object whose canonical form is hashed: the envelope without `hash`
/// and `global_position` (the database assigns the position at insert, and it
/// orders events; it does not identify them).
/// Public so that generators (the benchmark's bulk loader) hash exactly as the store does.
pub fn hash_input(e: &Envelope<'_>, payload: &Value, metadata: &Value) -> Value {
    let mut obj = match metadata {
        Value::Object(m) => m.clone(),
        other => {
            let mut m = Map::new();
            m.insert("metadata".into(), other.clone());
            m
        }
    };
    obj.insert("aggregate_type".into(), e.aggregate_type.into());
    obj.insert("aggregate_id".into(), e.aggregate_id.into());
    obj.insert("sequence".into(), e.sequence.into());
    obj.insert("event_id".into(), e.event_id.into());
    obj.insert("event_type".into(), e.event_type.into());
    obj.insert("event_version".into(), e.event_version.into());
    obj.insert("payload".into(), payload.clone());
    obj.insert("prev_hash".into(), e.prev_hash.into());
    Value::Object(obj)
}

/// One member of the envelope as the hasher writes it.
enum Field<'a> {
    /// A decoded value, written in canonical form.
    Value(&'a Value),
    /// Stored JSON text, written as it is.
    Raw(&'a str),
    Str(&'a str),
    Int(i64),
}

impl<'a> Envelope<'a> {
    /// The envelope's own members, which win over metadata members of the
    /// same name; `payload` as given.
    fn fields(&self, payload: Field<'a>) -> [(&'static str, Field<'a>); 8] {
        [
            ("aggregate_type", Field::Str(self.aggregate_type)),
            ("aggregate_id", Field::Str(self.aggregate_id)),
            ("sequence", Field::Int(self.sequence)),
            ("event_id", Field::Str(self.event_id)),
            ("event_type", Field::Str(self.event_type)),
            ("event_version", Field::Str(self.event_version)),
            ("payload", payload),
            ("prev_hash", Field::Str(self.prev_hash)),
        ]
    }
}

/// SHA-256 (hex) of the object made of the metadata's members (`meta`,
/// less those the envelope names) and the envelope's, keys sorted by bytes.
fn hash_members<'a>(
    meta: impl ExactSizeIterator<Item = (&'a str, Field<'a>)>,
    envelope: [(&'static str, Field<'a>); 8],
) -> String {
    let mut fields: Vec<(&str, Field<'_>)> = Vec::with_capacity(meta.len() + envelope.len());
    for (k, v) in meta {
        if !envelope.iter().any(|(e, _)| *e == k) {
            fields.push((k, v));
        }
    }
    fields.extend(envelope);
    fields.sort_by(|a, b| a.0.cmp(b.0));
    let mut h = Hasher::default();
    let mut write = || -> std::io::Result<()> {
        h.write_all(b"{")?;
        for (i, (k, v)) in fields.iter().enumerate() {
            if i > 0 {
                h.write_all(b",")?;
            }
            write_str(k, &mut h)?;
            h.write_all(b":")?;
            match v {
                Field::Value(v) => write_canonical(v, &mut h)?,
                Field::Raw(text) => h.write_all(text.as_bytes())?,
                Field::Str(s) => write_str(s, &mut h)?,
                Field::Int(n) => write!(h, "{n}")?,
            }
        }
        h.write_all(b"}")
    };
    write().expect("hashing does not fail");
    h.hex()
}

/// SHA-256 of the canonical form of [`hash_input`], written straight into
/// the hasher (no merged object, no copies of payload and metadata).
pub fn envelope_hash(e: &Envelope<'_>, payload: &Value, metadata: &Value) -> String {
    let Value::Object(meta) = metadata else {
        return sha256_canonical(&hash_input(e, payload, metadata));
    };
    hash_members(
        meta.iter().map(|(k, v)| (k.as_str(), Field::Value(v))),
        e.fields(Field::Value(payload)),
    )
}

/// [`envelope_hash`] from the stored text of `payload` and `metadata`
/// without decoding them: the payload's text and the metadata members'
/// texts are hashed as they are stored, and only the metadata's top level
/// is read (its member names borrowed). The store writes both in canonical
/// form, so for a row it wrote this is the row's hash at a fraction of the
/// cost; `None` when the metadata is not an object of plainly written
/// names.
///
/// Only **equality with a stored hash** proves anything: the bytes hashed
/// then are (barring a SHA-256 collision) the canonical form the stored
/// hash was made of, and they are the row's own texts, so decoding the row
/// and hashing its canonical form would find the same. A difference proves
/// nothing (the text may be valid but not canonical): the caller decides
/// it by [`envelope_hash`] of the decoded row.
pub fn envelope_hash_text(e: &Envelope<'_>, payload: &str, metadata: &str) -> Option<String> {
    // Later duplicates replace earlier ones, as they do in a decoded value.
    let meta: std::collections::BTreeMap<&str, &serde_json::value::RawValue> =
        serde_json::from_str(metadata).ok()?;
    Some(hash_members(
        meta.into_iter().map(|(k, v)| (k, Field::Raw(v.get()))),
        e.fields(Field::Raw(payload)),
    ))
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

    const E: Envelope<'static> = Envelope {
        aggregate_type: "job",
        aggregate_id: "id-1",
        sequence: 7,
        event_id: "e-1",
        event_type: "T",
        event_version: "1.0",
        prev_hash: "prev",
    };

    #[test]
    fn envelope_hash_is_the_hash_of_hash_input() {
        let metadata = [
            json!({"actor": {"id": "a", "kind": "agent", "role": "agent"}, "occurred_at": "2026-01-01T00:00:00Z",
                   "note": "é \"q\" \n\u{1} \u{2028}", "causation_id": null}),
            json!({"payload": "shadowed", "sequence": 99, "prev_hash": "x", "zz": [1, 2.5, null, true, -74.0, 1e300]}),
            json!("not an object"),
            json!(null),
            json!({}),
        ];
        let payloads = [
            json!({"b": 1, "a": {"y": [1, -74.0], "x": "s"}, "": "empty key", "ü": 1}),
            json!([]),
            json!("text"),
        ];
        for m in &metadata {
            for p in &payloads {
                let hash = envelope_hash(&E, p, m);
                assert_eq!(hash, sha256_canonical(&hash_input(&E, p, m)), "{m} {p}");
                // As the store writes them, the texts hash the same.
                let (pt, mt) = (p.to_string(), m.to_string());
                if m.is_object() {
                    assert_eq!(
                        envelope_hash_text(&E, &pt, &mt),
                        Some(hash.clone()),
                        "{m} {p}"
                    );
                }
                // Not canonical: other text, never the stored hash.
                let spaced = serde_json::to_string_pretty(p).unwrap();
                if spaced != pt {
                    assert_ne!(envelope_hash_text(&E, &spaced, &mt), Some(hash), "{m} {p}");
                }
            }
        }
    }
}
