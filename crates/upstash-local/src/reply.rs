//! Converting Redis replies into the JSON that Upstash clients expect.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use redis::{RedisError, Value};
use serde_json::Value as Json;

/// How strings in a reply are written, chosen by the `Upstash-Encoding` request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Strings as UTF-8 text (invalid bytes are replaced).
    Plain,
    /// Every string base64-encoded except the status reply `"OK"`.
    Base64,
}

impl Encoding {
    /// Picks the encoding from the `Upstash-Encoding` header value, if any.
    pub fn from_header(value: Option<&[u8]>) -> Self {
        match value {
            Some(v) if v.trim_ascii().eq_ignore_ascii_case(b"base64") => Self::Base64,
            _ => Self::Plain,
        }
    }

    fn string(self, bytes: &[u8]) -> Json {
        match self {
            Self::Plain => Json::String(String::from_utf8_lossy(bytes).into_owned()),
            Self::Base64 => Json::String(BASE64.encode(bytes)),
        }
    }

    fn status(self, status: &str) -> Json {
        if status == "OK" { Json::String(status.to_owned()) } else { self.string(status.as_bytes()) }
    }
}

/// A Redis reply for one command: a value, or the error text Redis answered with.
pub type Outcome = Result<Value, String>;

/// Splits a top-level reply into a value or a Redis error message.
pub fn outcome(value: Value) -> Outcome {
    match value {
        Value::ServerError(err) => Err(redis_error_message(&err.into())),
        other => Ok(other),
    }
}

/// Redis's own wording for an error reply, e.g. `NOSCRIPT No matching script...`.
pub fn redis_error_message(err: &RedisError) -> String {
    match (err.code(), err.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_owned(),
        _ => err.to_string(),
    }
}

/// The JSON form of a reply value.
pub fn to_json(value: Value, encoding: Encoding) -> Json {
    match value {
        Value::Nil => Json::Null,
        Value::Int(n) => Json::from(n),
        Value::BulkString(bytes) => encoding.string(&bytes),
        Value::SimpleString(s) => encoding.status(&s),
        Value::Okay => encoding.status("OK"),
        Value::Array(items) | Value::Set(items) => array(items, encoding),
        Value::Map(pairs) => {
            Json::Array(pairs.into_iter().flat_map(|(k, v)| [to_json(k, encoding), to_json(v, encoding)]).collect())
        }
        Value::Attribute { data, .. } => to_json(*data, encoding),
        Value::Double(d) => serde_json::Number::from_f64(d)
            .map(Json::Number)
            .unwrap_or_else(|| encoding.string(d.to_string().as_bytes())),
        Value::Boolean(b) => Json::from(i64::from(b)),
        Value::VerbatimString { text, .. } => encoding.string(text.as_bytes()),
        Value::BigNumber(n) => encoding.string(n.to_string().as_bytes()),
        Value::Push { data, .. } => array(data, encoding),
        Value::ServerError(err) => Json::String(redis_error_message(&err.into())),
    }
}

fn array(items: Vec<Value>, encoding: Encoding) -> Json {
    Json::Array(items.into_iter().map(|v| to_json(v, encoding)).collect())
}

/// The `{"result": ..}` or `{"error": ..}` object for one command.
pub fn entry_json(outcome: Outcome, encoding: Encoding) -> Json {
    match outcome {
        Ok(value) => serde_json::json!({ "result": to_json(value, encoding) }),
        Err(message) => serde_json::json!({ "error": message }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn plain_encoding_maps_types_directly() {
        let v = Value::Array(vec![
            Value::Nil,
            Value::Int(7),
            bulk("héllo"),
            Value::Okay,
            Value::SimpleString("PONG".into()),
            Value::Array(vec![bulk("x")]),
        ]);
        assert_eq!(to_json(v, Encoding::Plain), json!([null, 7, "héllo", "OK", "PONG", ["x"]]));
    }

    #[test]
    fn base64_encodes_every_string_except_ok() {
        let v = Value::Array(vec![
            Value::Nil,
            Value::Int(7),
            bulk("héllo"),
            Value::Okay,
            Value::SimpleString("OK".into()),
            Value::SimpleString("PONG".into()),
            Value::Array(vec![bulk("x")]),
        ]);
        assert_eq!(to_json(v, Encoding::Base64), json!([null, 7, "aMOpbGxv", "OK", "OK", "UE9ORw==", ["eA=="]]));
    }

    #[test]
    fn base64_keeps_non_utf8_bytes_intact() {
        let v = Value::BulkString(vec![0xff, 0x00, 0x80]);
        assert_eq!(to_json(v, Encoding::Base64), json!("/wCA"));
    }

    #[test]
    fn encoding_header_is_case_insensitive_and_defaults_to_plain() {
        assert_eq!(Encoding::from_header(Some(b"BASE64")), Encoding::Base64);
        assert_eq!(Encoding::from_header(Some(b"json")), Encoding::Plain);
        assert_eq!(Encoding::from_header(None), Encoding::Plain);
    }

    #[test]
    fn server_errors_keep_the_redis_prefix() {
        let err = redis::make_extension_error(
            "WRONGTYPE".into(),
            Some("Operation against a key holding the wrong kind of value".into()),
        );
        assert_eq!(redis_error_message(&err), "WRONGTYPE Operation against a key holding the wrong kind of value");
    }
}
