//! A third party's answer (a token endpoint, a JWKS, siteverify) read whole,
//! with its size cap enforced while it streams in: a declared
//! `Content-Length` over the cap stops before the first byte, and a chunked
//! or endless body stops at the first chunk past the cap, so memory never
//! holds more than the cap and one chunk.

#![deny(clippy::arithmetic_side_effects)]

/// Why an answer was not read.
#[derive(Debug)]
pub(crate) enum Unread {
    /// It is larger than the cap.
    TooLarge,
    /// The connection failed or timed out midway.
    Transport(reqwest::Error),
}

/// The body of `response`, if it is at most `cap` bytes.
pub(crate) async fn read(mut response: reqwest::Response, cap: usize) -> Result<Vec<u8>, Unread> {
    if response.content_length().is_some_and(|n| n > u64::try_from(cap).unwrap_or(u64::MAX)) {
        return Err(Unread::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(Unread::Transport)? {
        if body.len().saturating_add(chunk.len()) > cap {
            return Err(Unread::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
