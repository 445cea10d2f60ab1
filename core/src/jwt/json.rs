//! JSON objects that refuse duplicate member names.
//!
//! serde_json keeps the last of two equal member names, so `{"alg":"RS256","alg":"none"}` could
//! mean one thing to keygate and another to the next reader of the same token. RFC 7515 section 5.2
//! lets a JWS parser reject duplicates; keygate does, at every depth, in headers, payloads and
//! JWKS documents.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why bytes are not a duplicate-free JSON object. Carries nothing of the input.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JsonError {
    #[error("not valid JSON")]
    Syntax(#[source] serde_json::Error),
    #[error("an object has two members with the same name")]
    DuplicateMember,
    #[error("not a JSON object")]
    NotAnObject,
}

/// Parses `bytes` as one JSON object (UTF-8, nothing after it) with no duplicate member names.
pub(crate) fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, JsonError> {
    match serde_json::from_slice::<StrictValue>(bytes) {
        Ok(StrictValue(Value::Object(map))) => Ok(map),
        Ok(_) => Err(JsonError::NotAnObject),
        // The visitor accepts every JSON value, so its only data error is a duplicate name.
        Err(e) if e.is_data() => Err(JsonError::DuplicateMember),
        Err(e) => Err(JsonError::Syntax(e)),
    }
}

/// A `serde_json::Value` whose objects were checked for duplicate names while parsing.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // JSON text cannot spell NaN or infinity, so this is always a number.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(name) = access.next_key::<String>()? {
            let StrictValue(value) = access.next_value()?;
            if map.contains_key(&name) {
                return Err(de::Error::custom("duplicate member name"));
            }
            map.insert(name, value);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn object_without_duplicates_parses_like_serde_json() {
        let text = br#"{"a":1,"b":[true,null,"x",{"c":-2.5}],"d":{"e":18446744073709551615}}"#;
        let map = parse_object(text).unwrap();
        let expected: Value = serde_json::from_slice(text).unwrap();
        assert_eq!(Value::Object(map), expected);
    }

    #[test]
    fn duplicate_member_at_top_level_is_rejected() {
        let err = parse_object(br#"{"alg":"RS256","alg":"none"}"#).unwrap_err();
        assert!(matches!(err, JsonError::DuplicateMember));
    }

    #[test]
    fn duplicate_member_in_a_nested_object_is_rejected() {
        let err = parse_object(br#"{"a":[{"b":1,"b":1}]}"#).unwrap_err();
        assert!(matches!(err, JsonError::DuplicateMember));
    }

    #[test]
    fn names_equal_only_after_unescaping_are_duplicates() {
        let err = parse_object(br#"{"alg":"RS256","\u0061lg":"none"}"#).unwrap_err();
        assert!(matches!(err, JsonError::DuplicateMember));
    }

    #[test]
    fn non_objects_and_trailing_garbage_are_rejected() {
        assert!(matches!(parse_object(b"[1]"), Err(JsonError::NotAnObject)));
        assert!(matches!(parse_object(b"{} x"), Err(JsonError::Syntax(_))));
        assert!(matches!(
            parse_object(b"{\"a\":\"\xff\"}"),
            Err(JsonError::Syntax(_))
        ));
        assert!(matches!(parse_object(b""), Err(JsonError::Syntax(_))));
    }

    #[test]
    fn error_messages_do_not_echo_the_input() {
        let err = parse_object(br#"{"secret-name":1,"secret-name":2}"#).unwrap_err();
        assert!(!err.to_string().contains("secret"));
    }
}
