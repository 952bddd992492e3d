//! The JSON a Netlify function receives and returns: AWS API Gateway's
//! "REST API" (v1) proxy shape, plus Netlify's `rawQuery`. `netlify dev`
//! builds it in `lib/functions/server.js` of netlify-cli; answers need a
//! numeric `statusCode` and a string `body`.

use std::collections::HashMap;

use crate::relay::MOUNT;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Uri};
use http_body::Frame;
use http_body_util::StreamBody;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde::{Deserialize, Serialize};

/// Where Netlify serves the function itself; `netlify.toml` rewrites
/// `/api/relay/*` here, and either path may reach the function.
const FUNCTION_PATH: &str = "/.netlify/functions/relay";

/// Characters that cannot appear raw in a URI. `%` is not among them: a path
/// that arrives decoded is re-encoded only where it must be, and an odd `%`
/// is then refused by the relay rather than silently reinterpreted.
const NOT_IN_URI: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'<')
    .add(b'>')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}')
    .add(b'#');

/// The incoming event (fields the relay needs; the rest is ignored). Any
/// value may be `null` (`netlify dev --offline` sends `x-nf-account-id: [null]`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct Event {
    path: Option<String>,
    http_method: Option<String>,
    headers: Option<HashMap<String, Option<String>>>,
    multi_value_headers: Option<HashMap<String, Vec<Option<String>>>>,
    raw_query: Option<String>,
    multi_value_query_string_parameters: Option<HashMap<String, Vec<Option<String>>>>,
    body: Option<String>,
    is_base64_encoded: Option<bool>,
}

/// The request body: the event's, or the error that decoding it gave (the
/// relay answers that with `body_unreadable`).
pub(crate) type EventBody =
    StreamBody<futures_util::stream::Iter<std::array::IntoIter<Result<Frame<Bytes>, base64::DecodeError>, 1>>>;

impl Event {
    /// The event as an HTTP request for the relay.
    pub(crate) fn into_request(self) -> Request<EventBody> {
        let mut request = Request::new(self.body());
        // An unparsable method becomes one no route allows (OPTIONS without a
        // preflight header): refused with 405, never relayed as something else.
        let method = self.http_method.as_deref().unwrap_or_default();
        *request.method_mut() = Method::from_bytes(method.as_bytes()).unwrap_or(Method::OPTIONS);
        *request.uri_mut() = self.uri();
        *request.headers_mut() = self.header_map();
        request
    }

    /// The original path (either spelling of the mount) and query.
    fn uri(&self) -> Uri {
        let path = self.path.as_deref().unwrap_or_default();
        let path = path.strip_prefix(FUNCTION_PATH).map_or_else(|| path.to_owned(), |rest| format!("{MOUNT}{rest}"));
        let query = match (&self.raw_query, &self.multi_value_query_string_parameters) {
            (Some(raw), _) => raw.clone(),
            (None, Some(params)) => {
                let mut q = url::form_urlencoded::Serializer::new(String::new());
                for (name, values) in params {
                    for value in values.iter().flatten() {
                        q.append_pair(name, value);
                    }
                }
                q.finish()
            }
            (None, None) => String::new(),
        };
        // Only an origin-form target (RFC 9112 §3.2.1) is passed on; anything
        // else is answered as not found by the relay.
        if !path.starts_with('/') {
            return Uri::from_static("/");
        }
        let path = utf8_percent_encode(&path, NOT_IN_URI).to_string();
        let target =
            if query.is_empty() { path } else { format!("{path}?{}", utf8_percent_encode(&query, NOT_IN_URI)) };
        // Every character is valid in a URI by now.
        target.parse().unwrap_or_else(|_| Uri::from_static("/"))
    }

    fn header_map(&self) -> HeaderMap {
        let single = self.headers.iter().flatten().map(|(k, v)| (k, std::slice::from_ref(v)));
        let pairs: Vec<(&String, &[Option<String>])> = match &self.multi_value_headers {
            Some(multi) if !multi.is_empty() => multi.iter().map(|(k, v)| (k, v.as_slice())).collect(),
            _ => single.collect(),
        };
        let mut map = HeaderMap::new();
        for (name, values) in pairs {
            let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else { continue };
            for value in values.iter().flatten() {
                if let Ok(value) = HeaderValue::from_str(value) {
                    map.append(name.clone(), value);
                }
            }
        }
        map
    }

    fn body(&self) -> EventBody {
        let text = self.body.as_deref().unwrap_or_default();
        let bytes = if self.is_base64_encoded.unwrap_or(false) {
            BASE64.decode(text).map(Bytes::from)
        } else {
            Ok(Bytes::copy_from_slice(text.as_bytes()))
        };
        StreamBody::new(futures_util::stream::iter([bytes.map(Frame::data)]))
    }
}

/// The answer: text bodies as they are, anything else base64-encoded.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Answer {
    status_code: u16,
    headers: HashMap<String, String>,
    multi_value_headers: HashMap<String, Vec<String>>,
    body: String,
    is_base64_encoded: bool,
}

impl From<Response<Bytes>> for Answer {
    fn from(response: Response<Bytes>) -> Self {
        let (parts, body) = response.into_parts();
        let mut headers = HashMap::new();
        let mut multi_value_headers = HashMap::new();
        for name in parts.headers.keys() {
            let values: Vec<String> =
                parts.headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect();
            match <[String; 1]>::try_from(values) {
                Ok([value]) => {
                    headers.insert(name.to_string(), value);
                }
                Err(values) => {
                    multi_value_headers.insert(name.to_string(), values);
                }
            }
        }
        // netlify dev ignores isBase64Encoded, so text stays text.
        let (body, is_base64_encoded) = match String::from_utf8(body.to_vec()) {
            Ok(text) => (text, false),
            Err(_) => (BASE64.encode(&body), true),
        };
        Self { status_code: parts.status.as_u16(), headers, multi_value_headers, body, is_base64_encoded }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use serde_json::json;

    fn event(value: serde_json::Value) -> Event {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn netlify_dev_event_becomes_the_original_request() {
        let request = event(json!({
            "path": "/api/relay/getty/search/images",
            "httpMethod": "GET",
            "headers": { "accept": "application/json" },
            "multiValueHeaders": { "accept": ["application/json"], "x-nf-client-connection-ip": ["203.0.113.9"], "x-nf-account-id": [null] },
            "rawQuery": "phrase=cats&page=2",
            "queryStringParameters": { "phrase": "cats", "page": "2" },
            "body": null,
            "isBase64Encoded": false,
        }))
        .into_request();
        assert_eq!(request.uri(), "/api/relay/getty/search/images?phrase=cats&page=2");
        assert_eq!(request.headers()["x-nf-client-connection-ip"], "203.0.113.9");
    }

    #[test]
    fn function_path_maps_to_the_mount_and_raw_characters_are_encoded() {
        let request =
            event(json!({ "path": "/.netlify/functions/relay/getty/a b\\..", "httpMethod": "GET" })).into_request();
        assert_eq!(request.uri(), "/api/relay/getty/a%20b%5C..");
        let request = event(json!({ "path": "relative", "httpMethod": "GET" })).into_request();
        assert_eq!(request.uri(), "/");
    }

    #[test]
    fn query_is_rebuilt_from_parameters_without_raw_query() {
        let request = event(json!({
            "path": "/api/relay/getty/search",
            "httpMethod": "GET",
            "multiValueQueryStringParameters": { "phrase": ["cats & dogs"] },
        }))
        .into_request();
        assert_eq!(request.uri().query(), Some("phrase=cats+%26+dogs"));
    }

    #[tokio::test]
    async fn base64_bodies_are_decoded_and_bad_ones_fail_the_body() {
        let ok = event(json!({ "path": "/", "httpMethod": "POST", "body": "aGVsbG8=", "isBase64Encoded": true }));
        assert_eq!(ok.into_request().into_body().collect().await.unwrap().to_bytes(), "hello");
        let bad = event(json!({ "path": "/", "httpMethod": "POST", "body": "%%%", "isBase64Encoded": true }));
        assert!(bad.into_request().into_body().collect().await.is_err());
    }

    #[test]
    fn answers_keep_text_as_text_and_split_repeated_headers() {
        let response = Response::builder()
            .status(404)
            .header("content-type", "application/json")
            .header("vary", "origin")
            .header("vary", "accept")
            .body(Bytes::from_static(b"{\"error\":{}}"))
            .unwrap();
        let answer = serde_json::to_value(Answer::from(response)).unwrap();
        assert_eq!(answer["statusCode"], 404);
        assert_eq!(answer["headers"]["content-type"], "application/json");
        assert_eq!(answer["multiValueHeaders"]["vary"], json!(["origin", "accept"]));
        assert_eq!(answer["body"], "{\"error\":{}}");
        assert_eq!(answer["isBase64Encoded"], false);
        let binary = Answer::from(Response::new(Bytes::from_static(&[0xff, 0x00])));
        assert!(binary.is_base64_encoded);
        assert_eq!(binary.body, "/wA=");
    }
}
