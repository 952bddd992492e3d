//! Keeps injected credentials out of what the browser receives.
//!
//! Some APIs echo what they were sent ("invalid API key abc123…", debug and
//! echo endpoints). Every value the relay injected (the token, and extra
//! headers from the environment) is replaced by [`REDACTED`] in the response
//! body, across chunk boundaries, and a response header containing one is
//! dropped.

use aho_corasick::{AhoCorasick, MatchKind};
use bytes::Bytes;

/// What an injected credential is replaced with.
pub(super) const REDACTED: &[u8] = b"[REDACTED]";

/// The credentials of one relayed request.
#[derive(Clone)]
pub(super) struct Scrubber {
    finder: Option<AhoCorasick>,
    /// Length of the longest secret: a partial match is at most one byte shorter.
    longest: usize,
}

impl Scrubber {
    pub(super) fn new(secrets: Vec<Vec<u8>>) -> Self {
        let secrets: Vec<Vec<u8>> = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        let longest = secrets.iter().map(Vec::len).max().unwrap_or(0);
        // Building only fails for patterns far beyond any credential's size; then
        // nothing is injected either (see `inject`), so there is nothing to hide.
        let finder =
            AhoCorasick::builder().match_kind(MatchKind::LeftmostLongest).build(&secrets).ok().filter(|_| longest > 0);
        Self { finder, longest }
    }

    pub(super) fn contains(&self, haystack: &[u8]) -> bool {
        self.finder.as_ref().is_some_and(|f| f.is_match(haystack))
    }

    /// A redactor for one response body.
    pub(super) fn stream(&self) -> Redactor {
        Redactor { scrubber: self.clone(), carry: Vec::new() }
    }
}

/// Redacts a body chunk by chunk, holding back just enough bytes to catch a
/// credential split across two chunks.
pub(super) struct Redactor {
    scrubber: Scrubber,
    carry: Vec<u8>,
}

impl Redactor {
    /// The redacted bytes that are safe to send now.
    pub(super) fn push(&mut self, chunk: &[u8]) -> Bytes {
        let Some(finder) = &self.scrubber.finder else { return Bytes::copy_from_slice(chunk) };
        self.carry.extend_from_slice(chunk);
        let mut out = finder.replace_all_bytes(&self.carry, &vec![REDACTED; finder.patterns_len()]);
        let keep = (self.scrubber.longest - 1).min(out.len());
        self.carry = out.split_off(out.len() - keep);
        Bytes::from(out)
    }

    /// Whatever was held back, redacted.
    pub(super) fn finish(&mut self) -> Bytes {
        let rest = std::mem::take(&mut self.carry);
        match &self.scrubber.finder {
            Some(f) => Bytes::from(f.replace_all_bytes(&rest, &vec![REDACTED; f.patterns_len()])),
            None => Bytes::from(rest),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(secrets: &[&str], chunks: &[&str]) -> String {
        let mut r = Scrubber::new(secrets.iter().map(|s| s.as_bytes().to_vec()).collect()).stream();
        let mut out: Vec<u8> = chunks.iter().flat_map(|c| r.push(c.as_bytes())).collect();
        out.extend_from_slice(&r.finish());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn secrets_are_replaced_even_when_split_across_chunks() {
        let body = r#"{"error":"invalid token tok_abcdef, key KEY123"}"#;
        let expected = r#"{"error":"invalid token [REDACTED], key [REDACTED]"}"#;
        for split in 0..body.len() {
            let (a, b) = body.split_at(split);
            assert_eq!(run(&["tok_abcdef", "KEY123"], &[a, b]), expected, "split at {split}");
        }
        let bytes: Vec<String> = body.chars().map(String::from).collect();
        let one_by_one: Vec<&str> = bytes.iter().map(String::as_str).collect();
        assert_eq!(run(&["tok_abcdef", "KEY123"], &one_by_one), expected);
    }

    #[test]
    fn bodies_without_secrets_are_unchanged() {
        assert_eq!(run(&["tok_abcdef"], &["tok_abc", "xyz ", "tok_abcde"]), "tok_abcxyz tok_abcde");
        assert_eq!(run(&[], &["anything ", "at all"]), "anything at all");
    }

    #[test]
    fn header_values_are_checked_whole() {
        let s = Scrubber::new(vec![b"tok_abcdef".to_vec()]);
        assert!(s.contains(b"Bearer tok_abcdef"));
        assert!(!s.contains(b"Bearer tok_abc"));
    }
}
