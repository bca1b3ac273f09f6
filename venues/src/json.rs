//! A JSON reader that refuses what serde_json would silently resolve: duplicate keys
//! at any depth (compared after unescaping, so `"sym\u0062ol"` collides with
//! `"symbol"`), trailing data, and nesting past serde_json's recursion limit.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A parsed JSON value whose objects keep their keys in order and have no duplicates.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// An integer that fits `i64`/`u64`.
    Integer(i128),
    /// Any other number; kept only so the schema can refuse it by name.
    Float,
    /// A string, unescaped.
    String(String),
    /// An array.
    Array(Vec<Self>),
    /// An object, keys in document order.
    Object(Vec<(String, Self)>),
}

/// Why a JSON text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// A key appears twice in one object.
    #[error("JSON key `{0}` appears more than once in an object")]
    DuplicateKey(String),
    /// Not JSON, trailing data, or nested too deeply.
    #[error("not valid JSON: {0}")]
    Invalid(String),
}

const DUPLICATE_MARKER: &str = "keyward-duplicate-key:";

impl Json {
    /// Parses exactly one JSON value (surrounding whitespace allowed, nothing else).
    pub fn parse(text: &str) -> Result<Self, JsonError> {
        serde_json::from_str::<Self>(text).map_err(|e| {
            let message = e.to_string();
            match message.strip_prefix(DUPLICATE_MARKER) {
                Some(rest) => {
                    let key = rest.split(" at line ").next().unwrap_or(rest);
                    JsonError::DuplicateKey(key.to_owned())
                }
                None => JsonError::Invalid(message),
            }
        })
    }

    /// True if a keyward token stands anywhere in the value: in a key or inside a
    /// string at any depth. A token is sent only in the API-key header; one inside a
    /// parameter would be forwarded to the exchange and could come back in its
    /// answer or an error message.
    pub fn mentions_token(&self) -> bool {
        match self {
            Self::String(text) => keyward_policy::mentions_token(text),
            Self::Array(items) => items.iter().any(Self::mentions_token),
            Self::Object(entries) => entries
                .iter()
                .any(|(key, value)| keyward_policy::mentions_token(key) || value.mentions_token()),
            Self::Null | Self::Bool(_) | Self::Integer(_) | Self::Float => false,
        }
    }

    /// Short name of the value's type, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool(_) => "a boolean",
            Self::Integer(_) => "an integer",
            Self::Float => "a number",
            Self::String(_) => "a string",
            Self::Array(_) => "an array",
            Self::Object(_) => "an object",
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Integer(i128::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Integer(i128::from(v)))
    }

    fn visit_f64<E: de::Error>(self, _v: f64) -> Result<Json, E> {
        Ok(Json::Float)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Json>()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut seen = HashSet::new();
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format_args!("{DUPLICATE_MARKER}{key}")));
            }
            let value = map.next_value::<Json>()?;
            entries.push((key, value));
        }
        Ok(Json::Object(entries))
    }
}

/// Appends `text` as a JSON string literal.
pub fn write_string(out: &mut String, text: &str) {
    // Serialising a &str to JSON cannot fail.
    out.push_str(&serde_json::to_string(text).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_values() {
        let v = Json::parse(r#" [{"b":"1","a":2,"c":1.5,"d":null,"e":true}] "#).unwrap();
        assert_eq!(
            v,
            Json::Array(vec![Json::Object(vec![
                ("b".into(), Json::String("1".into())),
                ("a".into(), Json::Integer(2)),
                ("c".into(), Json::Float),
                ("d".into(), Json::Null),
                ("e".into(), Json::Bool(true)),
            ])])
        );
    }

    #[test]
    fn refuses_duplicates_at_any_depth_and_after_unescaping() {
        assert_eq!(
            Json::parse(r#"{"a":1,"a":2}"#),
            Err(JsonError::DuplicateKey("a".into()))
        );
        assert_eq!(
            Json::parse(r#"[{"x":{"symbol":"A","sym\u0062ol":"B"}}]"#),
            Err(JsonError::DuplicateKey("symbol".into()))
        );
    }

    #[test]
    fn refuses_trailing_data_and_deep_nesting() {
        assert!(matches!(
            Json::parse(r#"{"a":1}{"a":2}"#),
            Err(JsonError::Invalid(_))
        ));
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(Json::parse(&deep), Err(JsonError::Invalid(_))));
        assert!(matches!(Json::parse(""), Err(JsonError::Invalid(_))));
    }

    #[test]
    fn writes_escaped_strings() {
        let mut out = String::new();
        write_string(&mut out, "a\"b");
        assert_eq!(out, r#""a\"b""#);
    }
}
