//! Decoding raw stream replies into binary-safe types.
//!
//! redis-rs has typed stream replies, but they hold field values as [`Value`] and skip
//! details we need (the deleted ids of `XAUTOCLAIM`, a `nil` body for an entry trimmed away
//! while pending). Decoding by hand also accepts both RESP2 arrays and RESP3 maps, so the
//! protocol version can change without touching callers.

use std::collections::HashMap;

use redis::Value;

/// One stream entry. Field values are raw bytes: a face crop is binary JPEG.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamEntry {
    /// The entry id, `<ms>-<seq>`.
    pub id: String,
    /// Field name to value. Empty when the entry was trimmed from the stream while still
    /// pending (the id is then all that is left; ack or dead-letter it).
    pub fields: HashMap<String, Vec<u8>>,
}

impl StreamEntry {
    /// A field's bytes.
    pub fn get(&self, field: &str) -> Option<&[u8]> {
        self.fields.get(field).map(Vec::as_slice)
    }

    /// A field as UTF-8 text (`None` when missing or not UTF-8).
    pub fn get_str(&self, field: &str) -> Option<&str> {
        std::str::from_utf8(self.get(field)?).ok()
    }

    /// The fields as `(name, bytes)` pairs, ready for [`super::streams::append_capped`].
    pub fn field_pairs(&self) -> Vec<(&str, &[u8])> {
        let mut pairs: Vec<(&str, &[u8])> =
            self.fields.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
        pairs.sort_unstable_by_key(|(k, _)| *k); // stable order: easier to read in redis-cli
        pairs
    }
}

/// A reply element of the wrong shape, described for [`super::BusError::Reply`].
pub(crate) type Shape<T> = Result<T, String>;

/// Bytes of a string-like value.
pub(crate) fn bytes(value: Value) -> Shape<Vec<u8>> {
    match value {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.into_bytes()),
        Value::VerbatimString { text, .. } => Ok(text.into_bytes()),
        Value::Okay => Ok(b"OK".to_vec()),
        Value::Int(i) => Ok(i.to_string().into_bytes()),
        other => Err(format!("expected a string, got {other:?}")),
    }
}

/// A string-like value as UTF-8.
pub(crate) fn string(value: Value) -> Shape<String> {
    String::from_utf8(bytes(value)?).map_err(|_| "expected UTF-8 text".to_owned())
}

/// An integer, sent as an integer or as digits.
pub(crate) fn int(value: Value) -> Shape<i64> {
    match value {
        Value::Int(i) => Ok(i),
        other => string(other)?.parse().map_err(|_| "expected an integer".to_owned()),
    }
}

/// The elements of an array or set; `nil` is an empty list (a timed-out blocking read).
pub(crate) fn list(value: Value) -> Shape<Vec<Value>> {
    match value {
        Value::Array(items) | Value::Set(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        other => Err(format!("expected an array, got {other:?}")),
    }
}

/// Key/value pairs from a RESP3 map or a flat RESP2 array `[k1, v1, k2, v2, ...]`.
pub(crate) fn pairs(value: Value) -> Shape<Vec<(Value, Value)>> {
    match value {
        Value::Map(pairs) => Ok(pairs),
        other => {
            let items = list(other)?;
            if items.len() % 2 != 0 {
                return Err("expected an even number of elements".to_owned());
            }
            let mut it = items.into_iter();
            let mut out = Vec::new();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                out.push((k, v));
            }
            Ok(out)
        }
    }
}

/// One entry: `[id, [field, value, ...]]`, or `[id, nil]` for a trimmed pending entry.
pub(crate) fn entry(value: Value) -> Shape<StreamEntry> {
    let mut parts = list(value)?.into_iter();
    let id = string(parts.next().ok_or("entry without id")?)?;
    let fields = match parts.next() {
        None | Some(Value::Nil) => HashMap::new(),
        Some(body) => {
            pairs(body)?.into_iter().map(|(k, v)| Ok((string(k)?, bytes(v)?))).collect::<Shape<_>>()?
        }
    };
    Ok(StreamEntry { id, fields })
}

/// A list of entries (`XRANGE`, the middle of `XAUTOCLAIM`).
pub(crate) fn entries(value: Value) -> Shape<Vec<StreamEntry>> {
    list(value)?.into_iter().map(entry).collect()
}

/// The entries of an `XREAD`/`XREADGROUP` reply for one key: `[[key, entries]]` in RESP2,
/// `{key: entries}` in RESP3; `nil` when the block time passed without entries.
pub(crate) fn read_reply(value: Value) -> Shape<Vec<StreamEntry>> {
    let streams: Vec<(Value, Value)> = match value {
        Value::Nil => return Ok(Vec::new()),
        Value::Map(pairs) => pairs,
        other => list(other)?
            .into_iter()
            .map(|s| {
                let mut kv = list(s)?.into_iter();
                Ok((kv.next().ok_or("stream without name")?, kv.next().ok_or("stream without entries")?))
            })
            .collect::<Shape<_>>()?,
    };
    let mut out = Vec::new();
    for (_key, body) in streams {
        out.extend(entries(body)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &[u8]) -> Value {
        Value::BulkString(s.to_vec())
    }

    #[test]
    fn decodes_binary_fields_and_trimmed_entries() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk(b"k"),
            Value::Array(vec![
                Value::Array(vec![bulk(b"1-0"), Value::Array(vec![bulk(b"crop"), bulk(&[0xff, 0xd8, 0])])]),
                Value::Array(vec![bulk(b"2-0"), Value::Nil]),
            ]),
        ])]);
        let got = read_reply(reply).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].get("crop"), Some(&[0xff, 0xd8, 0][..]));
        assert!(got[1].fields.is_empty());
        assert!(read_reply(Value::Nil).unwrap().is_empty());
    }
}
