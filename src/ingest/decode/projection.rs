//! Projection pushdown: decode only the fields a pipeline reads.
//!
//! Two chains never pass a record's other fields on, so only the top-level
//! fields they read are built and every other value is parsed without being
//! allocated:
//! - every record ends in an aggregate (reaching it through `key` and `dedup`
//!   steps only): the `key` fields, the `dedup` field, the aggregate's
//!   `func(field)` fields and its window's `time_field`;
//! - the first step that is not `key` or `dedup` is a `jq` expression in the
//!   native subset whose output depends on named fields only (no `.`, no bare
//!   `select` handing the record on, see [`crate::ingest::transform::jq::JqProgram::reads`]):
//!   those fields, with the `key`/`dedup` fields before it. A record the
//!   native path leaves to jaq gets the same answer from the projected
//!   record, since the output depends on nothing else.
//!
//! What stays exactly as before: a payload that is not UTF-8 or not JSON
//! syntax is the same error (with the same message: such payloads are handed
//! back for a full decode); a payload that is not an object is decoded in full
//! and fails the same way; duplicate keys keep the last value; the fields read
//! keep serde_json's nesting limit. What differs, in fields the pipeline never
//! reads: nesting deeper than 128 levels, a lone UTF-16 surrogate escape
//! (`"\ud800"`) and a number too large for a float are accepted — all three
//! are valid JSON syntax that serde_json refuses only when it builds the value.
//! Dead letters are unaffected: they carry the original payload.

use super::DecodeError;
use crate::config::aggregate;
use crate::config::TransformConfig;
use crate::ingest::transform::jq::JqProgram;
use crate::model::Row;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;
use std::borrow::Cow;
use std::fmt;

/// The top-level fields a pipeline's records need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Projection {
    fields: Box<[Box<str>]>,
}

impl Projection {
    /// The projection a transform chain allows, if any (see the module docs).
    pub fn for_transforms(steps: &[TransformConfig]) -> Option<Self> {
        let mut fields: Vec<&str> = Vec::new();
        for step in steps {
            match step {
                TransformConfig::Key { fields: f } => fields.extend(f.iter().map(String::as_str)),
                TransformConfig::Dedup(d) => fields.extend(d.field.as_deref()),
                TransformConfig::Aggregate(a) => {
                    // Validated at start-up; an unparsable step gets no projection.
                    let specs = aggregate::parse_all(&a.columns).ok()?;
                    let mut fields: Vec<Box<str>> = fields.into_iter().map(Box::from).collect();
                    fields.extend(specs.into_iter().filter_map(|s| s.field.map(Box::from)));
                    let time = a.window.as_ref().and_then(|w| w.time_field.as_deref());
                    fields.extend(time.map(Box::from));
                    fields.sort();
                    fields.dedup();
                    return Some(Self {
                        fields: fields.into_boxed_slice(),
                    });
                }
                TransformConfig::Jq { expr } => {
                    let reads = JqProgram::compile(expr).ok()?.reads()?;
                    let mut fields: Vec<Box<str>> = fields.into_iter().map(Box::from).collect();
                    fields.extend(reads.into_iter().map(Box::from));
                    fields.sort();
                    fields.dedup();
                    return Some(Self {
                        fields: fields.into_boxed_slice(),
                    });
                }
                // May read (or pass on) any field.
                TransformConfig::Operator { .. } => return None,
            }
        }
        None
    }

    /// The fields kept, sorted.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|f| &**f)
    }

    /// The wanted fields of an object payload; `Ok(None)` when the payload is
    /// not a UTF-8 object, for the caller to decode in full.
    pub fn decode(&self, bytes: &[u8]) -> Result<Option<Row>, DecodeError> {
        let Ok(text) = std::str::from_utf8(bytes) else {
            return Ok(None);
        };
        let first = text.trim_start_matches([' ', '\t', '\n', '\r']).as_bytes();
        if first.first() != Some(&b'{') {
            return Ok(None);
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let row = Wanted(&self.fields).deserialize(&mut de)?;
        de.end()?;
        Ok(Some(row))
    }
}

/// Builds the wanted fields of one object, skipping the others.
struct Wanted<'p>(&'p [Box<str>]);

impl<'de> DeserializeSeed<'de> for Wanted<'_> {
    type Value = Row;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Row, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Wanted<'_> {
    type Value = Row;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Row, A::Error> {
        let mut row = Row::new();
        while let Some(key) = map.next_key_seed(Key)? {
            if self.0.iter().any(|f| **f == *key) {
                let value: Value = map.next_value()?;
                // Later duplicates win, as in a full decode.
                row.insert(key.into_owned(), value);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(row)
    }
}

/// An object key, borrowed from the payload unless it had escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(s))
    }

    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(s))
    }
}

#[cfg(test)]
mod tests;
