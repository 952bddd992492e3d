//! The request body, read before the upstream call: bounded, and absent on
//! a `GET` or `HEAD`.

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http_body_util::{BodyExt, Limited};

use super::error::{Kind, RelayError};

/// The request body, at most `limit` bytes. A `GET` or `HEAD` has none: its
/// body never reaches the upstream, whose answer could depend on it while the
/// cache keys it without (and whose servers disagree on what it means).
pub(super) async fn read_body<B>(
    method: &http::Method,
    headers: &HeaderMap,
    body: B,
    limit: u64,
) -> Result<Bytes, RelayError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(Kind::BodyTooLarge(limit).into());
    }
    let bytes = match Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX)).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(Kind::BodyTooLarge(limit).into()),
        Err(_) => return Err(Kind::BodyUnreadable.into()),
    };
    if !bytes.is_empty() && (method == http::Method::GET || method == http::Method::HEAD) {
        return Err(Kind::BodyNotAllowed(method.clone()).into());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Method, StatusCode};
    use http_body_util::Full;

    fn body(bytes: &'static [u8]) -> Full<Bytes> {
        Full::new(Bytes::from_static(bytes))
    }

    #[tokio::test]
    async fn get_and_head_carry_no_body() {
        for method in [Method::GET, Method::HEAD] {
            let err = read_body(&method, &HeaderMap::new(), body(b"POISON"), 100).await.unwrap_err();
            assert_eq!((err.code(), err.status()), ("body_not_allowed", StatusCode::BAD_REQUEST), "{method}");
            assert!(!err.to_string().contains("POISON"), "{err}");
            assert_eq!(read_body(&method, &HeaderMap::new(), body(b""), 100).await.unwrap(), "", "{method}");
        }
        assert_eq!(read_body(&Method::POST, &HeaderMap::new(), body(b"x"), 100).await.unwrap(), "x");
    }
}
