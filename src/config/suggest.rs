//! "Did you mean": for an unknown key, the known keys at the place it was written and the
//! nearest of them. The known keys are read from the raw shape itself (the field list
//! serde hands to `deserialize_struct`), so a key added to a raw struct is suggested
//! without a second list to keep in step.

use std::fmt;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};

/// One step from a section's root to a value: a table key or an array element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    Key(String),
    Index,
}

/// The steps of a path that `serde_ignored` reports, root first.
pub(super) fn steps(path: &serde_ignored::Path<'_>) -> Vec<Step> {
    use serde_ignored::Path;
    let mut steps = Vec::new();
    let mut at = path;
    loop {
        at = match at {
            Path::Root => break,
            Path::Seq { parent, .. } => {
                steps.push(Step::Index);
                parent
            }
            Path::Map { parent, key } => {
                steps.push(Step::Key(key.clone()));
                parent
            }
            Path::Some { parent }
            | Path::NewtypeStruct { parent }
            | Path::NewtypeVariant { parent } => parent,
        };
    }
    steps.reverse();
    steps
}

/// The keys `T` accepts in the table that `parents` lead to, if that is a struct.
pub(super) fn known_keys<T: DeserializeOwned>(parents: &[Step]) -> Option<&'static [&'static str]> {
    let mut found = None;
    let _ = T::deserialize(Probe {
        steps: parents,
        found: &mut found,
    });
    found
}

/// The known key closest to `word` (ignoring case and `-` for `_`), when it is close enough
/// to be a slip rather than another word.
pub(super) fn nearest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    let normal = |s: &str| s.to_lowercase().replace('-', "_");
    let word = normal(word);
    let limit = match word.chars().count() {
        0..=4 => 1,
        5..=10 => 2,
        _ => 3,
    };
    known
        .iter()
        .map(|key| (strsim::damerau_levenshtein(&word, &normal(key)), *key))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, key)| key)
}

/// The message for an unknown key: the nearest known key, or all of them.
pub(super) fn unknown_key_message(word: &str, known: Option<&[&str]>) -> String {
    match known {
        Some(known) => match nearest(word, known) {
            Some(key) => format!("unknown key `{word}` — did you mean `{key}`?"),
            None => format!("unknown key `{word}` (known: {})", known.join(", ")),
        },
        None => format!("unknown key `{word}`"),
    }
}

/// A deserializer that holds no data: it walks `steps` into `T` by offering exactly one key
/// or element at each level, and records the field list of the struct it arrives at.
struct Probe<'p> {
    steps: &'p [Step],
    found: &'p mut Option<&'static [&'static str]>,
}

/// Ends the walk; nothing is deserialized.
#[derive(Debug)]
struct Stop;

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("probe stopped")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Stop
    }
}

impl<'de> de::Deserializer<'de> for Probe<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        if self.steps.is_empty() {
            *self.found = Some(fields);
            return Err(Stop);
        }
        de::Deserializer::deserialize_map(self, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        match self.steps.split_first() {
            Some((Step::Key(key), rest)) => visitor.visit_map(OneEntry {
                key: Some(key.as_str()),
                value: Some(Probe {
                    steps: rest,
                    found: self.found,
                }),
            }),
            _ => Err(Stop),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        match self.steps.split_first() {
            Some((Step::Index, rest)) => visitor.visit_seq(OneElement(Some(Probe {
                steps: rest,
                found: self.found,
            }))),
            _ => Err(Stop),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct tuple tuple_struct enum identifier ignored_any
    }
}

struct OneEntry<'p> {
    key: Option<&'p str>,
    value: Option<Probe<'p>>,
}

impl<'de> MapAccess<'de> for OneEntry<'_> {
    type Error = Stop;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Stop> {
        match self.key.take() {
            Some(key) => seed
                .deserialize(IntoDeserializer::<'de, Stop>::into_deserializer(key))
                .map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Stop> {
        match self.value.take() {
            Some(probe) => seed.deserialize(probe),
            None => Err(Stop),
        }
    }
}

struct OneElement<'p>(Option<Probe<'p>>);

impl<'de> SeqAccess<'de> for OneElement<'_> {
    type Error = Stop;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Stop> {
        match self.0.take() {
            Some(probe) => seed.deserialize(probe).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::{RawConsole, RawPolicy};

    #[test]
    fn the_known_keys_are_read_from_the_shape_at_any_depth() {
        let policy = known_keys::<RawPolicy>(&[]).expect("policy keys");
        let freeze = known_keys::<RawPolicy>(&[Step::Key("freeze".into()), Step::Index])
            .expect("freeze keys");
        let user =
            known_keys::<RawConsole>(&[Step::Key("users".into()), Step::Index]).expect("user keys");

        assert!(policy.contains(&"rollback_allowed") && policy.contains(&"freeze"));
        assert!(freeze.contains(&"start") && freeze.contains(&"services"));
        assert!(user.contains(&"password_hash"));
    }

    #[test]
    fn a_slip_is_answered_with_the_nearest_key_and_a_stranger_with_the_list() {
        assert_eq!(
            unknown_key_message("rollback_alowed", Some(&["rollback_allowed", "channels"])),
            "unknown key `rollback_alowed` — did you mean `rollback_allowed`?"
        );
        assert_eq!(
            nearest("Rollback-Allowed", &["rollback_allowed"]),
            Some("rollback_allowed")
        );
        assert_eq!(
            unknown_key_message("colour", Some(&["url", "token"])),
            "unknown key `colour` (known: url, token)"
        );
    }
}
