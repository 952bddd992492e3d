//! Keeps injected credentials out of what the browser receives.
//!
//! Some APIs echo what they were sent ("invalid API key abc123…", debug and
//! echo endpoints, a request URL quoted in an error). Every value the relay
//! injected (the token, and extra headers from the environment) is replaced
//! by [`REDACTED`] in the response body, across chunk boundaries, and a
//! response header containing one is dropped, in each form an upstream may
//! echo it: raw; percent-encoded (RFC 3986 §2.1, as the relay itself encodes
//! a query-injected token) and form-encoded, hex digits in either case;
//! JSON-escaped (`\/`, `\u002F`; RFC 8259 §7); and base64 (RFC 4648 §4 and
//! §5), at each of the three alignments it can have inside a longer encoded
//! text. Matching ignores ASCII case, so a credential that differs only in
//! case is redacted too.

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use bytes::Bytes;

/// What an injected credential is replaced with.
pub(super) const REDACTED: &[u8] = b"[REDACTED]";
/// Shortest base64 fragment looked for: shorter ones would match ordinary text.
const MIN_BASE64_FRAGMENT: usize = 8;
/// RFC 3986 §2.3 unreserved characters, never percent-encoded.
const UNRESERVED: &[u8] = b"-._~";
/// Characters `encodeURIComponent` leaves as they are, beyond the unreserved ones.
const URI_COMPONENT_EXTRA: &[u8] = b"!'()*";

/// The credentials of one relayed request.
#[derive(Clone)]
pub(super) struct Scrubber {
    finder: Option<AhoCorasick>,
    /// Length of the longest secret: a partial match is at most one byte shorter.
    longest: usize,
    /// Whether a form of a secret holds a line break. None does unless the
    /// secret itself holds one (every encoding escapes it), which a value
    /// sent in a header or a URL cannot.
    spans_lines: bool,
}

impl Scrubber {
    /// A scrubber for `secrets` and every encoded form of each.
    pub(super) fn new(secrets: Vec<Vec<u8>>) -> Self {
        let mut patterns: Vec<Vec<u8>> = secrets.iter().filter(|s| !s.is_empty()).flat_map(|s| forms(s)).collect();
        patterns.sort();
        patterns.dedup();
        let longest = patterns.iter().map(Vec::len).max().unwrap_or(0);
        let spans_lines = patterns.iter().any(|p| p.contains(&b'\n'));
        // Building only fails for patterns far beyond any credential's size; then
        // nothing is injected either (see `inject`), so there is nothing to hide.
        let finder = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .ascii_case_insensitive(true)
            .build(&patterns)
            .ok()
            .filter(|_| longest > 0);
        Self { finder, longest, spans_lines }
    }

    pub(super) fn contains(&self, haystack: &[u8]) -> bool {
        self.finder.as_ref().is_some_and(|f| f.is_match(haystack))
    }

    /// A whole body, redacted: `body` itself (not copied) when it holds no credential.
    pub(super) fn redact(&self, body: Bytes) -> Bytes {
        match &self.finder {
            Some(finder) if finder.is_match(&body) => Bytes::from(replaced(finder, &body)),
            _ => body,
        }
    }

    /// A redactor for one response body.
    pub(super) fn stream(&self) -> Redactor {
        Redactor { scrubber: self.clone(), carry: Vec::new() }
    }
}

/// `haystack` with every match replaced by [`REDACTED`].
fn replaced(finder: &AhoCorasick, haystack: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    finder.replace_all_with_bytes(haystack, &mut out, |_, _, out| {
        out.extend_from_slice(REDACTED);
        true
    });
    out
}

/// `secret` as an upstream may echo it (case aside: matching ignores it).
fn forms(secret: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![secret.to_vec()];
    // Percent-encoding: every non-alphanumeric byte, RFC 3986 (unreserved
    // kept), encodeURIComponent, and application/x-www-form-urlencoded
    // (WHATWG URL §5.2: space as '+').
    out.push(percent_encoded(secret, |_| false));
    out.push(percent_encoded(secret, |b| UNRESERVED.contains(&b)));
    out.push(percent_encoded(secret, |b| UNRESERVED.contains(&b) || URI_COMPONENT_EXTRA.contains(&b)));
    out.push(url::form_urlencoded::byte_serialize(secret).collect::<String>().into_bytes());
    // JSON strings (RFC 8259 §7): escapers differ on '/' (`\/` in PHP,
    // `\u002f`), on HTML-sensitive characters (Gson writes `<>&='` as
    // `\u00XX`), and some write every punctuation character that way.
    out.push(json_escaped(secret, |b| (b == b'/').then(|| b"\\/".to_vec())));
    out.push(json_escaped(secret, |b| (b == b'/').then(|| unicode_escape(b))));
    out.push(json_escaped(secret, |b| b"<>&='".contains(&b).then(|| unicode_escape(b))));
    out.push(json_escaped(secret, |b| {
        (!b.is_ascii_alphanumeric() && !UNRESERVED.contains(&b) && b < 0x80).then(|| unicode_escape(b))
    }));
    // Base64 of a text containing the secret at any offset: only the
    // characters that depend on the secret's bits alone are matched.
    for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
        for offset in 0..3 {
            let mut padded = vec![0u8; offset];
            padded.extend_from_slice(secret);
            let encoded = engine.encode(&padded).into_bytes();
            let first = (offset * 8).div_ceil(6);
            let last = padded.len() * 8 / 6;
            if let Some(fragment) = encoded.get(first..last).filter(|f| f.len() >= MIN_BASE64_FRAGMENT) {
                out.push(fragment.to_vec());
            }
        }
    }
    out
}

/// `secret` in a JSON string, with `escape` choosing how a byte is written
/// beyond what JSON always escapes (quote, backslash, control characters).
fn json_escaped(secret: &[u8], escape: impl Fn(u8) -> Option<Vec<u8>>) -> Vec<u8> {
    let mut v = Vec::with_capacity(secret.len() * 2);
    for &b in secret {
        match escape(b) {
            Some(escaped) => v.extend_from_slice(&escaped),
            None if b == b'"' || b == b'\\' => v.extend_from_slice(&[b'\\', b]),
            None if b < 0x20 => v.extend_from_slice(&unicode_escape(b)),
            None => v.push(b),
        }
    }
    v
}

fn unicode_escape(b: u8) -> Vec<u8> {
    format!("\\u{b:04x}").into_bytes()
}

fn percent_encoded(secret: &[u8], keep: impl Fn(u8) -> bool) -> Vec<u8> {
    let mut v = Vec::with_capacity(secret.len() * 3);
    for &b in secret {
        if b.is_ascii_alphanumeric() || keep(b) {
            v.push(b);
        } else {
            v.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    v
}

/// Redacts a body chunk by chunk, holding back just enough bytes to catch a
/// credential split across two chunks, and never a line's end: no credential
/// spans a line break, so an event stream's events go out as they come.
pub(super) struct Redactor {
    scrubber: Scrubber,
    carry: Vec<u8>,
}

impl Redactor {
    /// The redacted bytes that are safe to send now.
    pub(super) fn push(&mut self, chunk: &[u8]) -> Bytes {
        let Some(finder) = &self.scrubber.finder else { return Bytes::copy_from_slice(chunk) };
        self.carry.extend_from_slice(chunk);
        let mut out =
            if finder.is_match(&self.carry) { replaced(finder, &self.carry) } else { std::mem::take(&mut self.carry) };
        // Held back: what could start a credential the next chunk ends, but
        // nothing up to a line's end.
        let mut keep = (self.scrubber.longest - 1).min(out.len());
        if !self.scrubber.spans_lines
            && let Some(line_end) = out[out.len() - keep..].iter().rposition(|&b| b == b'\n')
        {
            keep -= line_end + 1;
        }
        self.carry = out.split_off(out.len() - keep);
        Bytes::from(out)
    }

    /// A whole body, redacted (see [`Scrubber::redact`]), for a redactor that
    /// was given nothing else.
    pub(super) fn redact_whole(&self, body: Bytes) -> Bytes {
        self.scrubber.redact(body)
    }

    /// Whatever was held back, redacted.
    pub(super) fn finish(&mut self) -> Bytes {
        self.scrubber.redact(Bytes::from(std::mem::take(&mut self.carry)))
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
    fn what_ends_a_line_is_sent_at_once_and_a_secret_across_lines_is_still_caught() {
        let mut r = Scrubber::new(vec![b"tok_abcdef".to_vec()]).stream();
        assert_eq!(&r.push(b"data: first\n\n")[..], b"data: first\n\n");
        let mut sent = r.push(b"data: tok_abc").to_vec();
        assert!(!sent.ends_with(b"tok_abc"), "a line's unfinished tail waits: {sent:?}");
        sent.extend_from_slice(&r.push(b"def\n\ndata: x"));
        assert_eq!(sent, b"data: [REDACTED]\n\n");
        assert_eq!(&r.finish()[..], b"data: x");
        // A secret holding a line break is still caught across chunks.
        assert_eq!(run(&["a\nb-secret"], &["x a\n", "b-secret y"]), "x [REDACTED] y");
    }

    #[test]
    fn bodies_without_secrets_are_unchanged() {
        assert_eq!(run(&["tok_abcdef"], &["tok_abc", "xyz ", "tok_abcde"]), "tok_abcxyz tok_abcde");
        assert_eq!(run(&[], &["anything ", "at all"]), "anything at all");
    }

    #[test]
    fn every_encoding_of_a_secret_is_redacted() {
        use base64::engine::general_purpose::{STANDARD, URL_SAFE};
        let secret = "tok_ab/cd+ef==~x y";
        let encoded = [
            "tok_ab%2Fcd%2Bef%3D%3D~x%20y".to_owned(),
            "tok_ab%2fcd%2bef%3d%3d~x%20y".to_owned(),
            "tok%5Fab%2Fcd%2Bef%3D%3D%7Ex%20y".to_owned(),
            "tok_ab%2Fcd%2Bef%3D%3D%7Ex+y".to_owned(),
            "tok_ab\\/cd+ef==~x y".to_owned(),
            "tok_ab\\u002Fcd+ef==~x y".to_owned(),
            "tok_ab/cd+ef\\u003d\\u003d~x y".to_owned(),
            "tok_ab\\u002fcd\\u002bef\\u003d\\u003d~x\\u0020y".to_owned(),
            "TOK_AB/CD+EF==~X Y".to_owned(),
        ];
        for form in &encoded {
            let body = format!("{{\"echo\":\"{form}\"}}");
            assert_eq!(run(&[secret], &[&body]), r#"{"echo":"[REDACTED]"}"#, "{form}");
        }
        // Inside a longer base64 text, at every alignment, both alphabets.
        for prefix in ["", "a", "ab", "Bearer "] {
            let text = format!("{prefix}{secret} and more");
            for b64 in [STANDARD.encode(&text), URL_SAFE.encode(&text)] {
                let out = run(&[secret], &[&b64]);
                assert!(out.contains("[REDACTED]"), "{prefix:?}: {b64} -> {out}");
            }
        }
    }

    #[test]
    fn encoded_forms_are_caught_across_chunk_boundaries() {
        let body = "x=tok_ab%2Fcd%2Bef%3D%3D&y=1";
        for split in 0..body.len() {
            let (a, b) = body.split_at(split);
            assert_eq!(run(&["tok_ab/cd+ef=="], &[a, b]), "x=[REDACTED]&y=1", "split at {split}");
        }
    }

    #[test]
    fn a_whole_body_is_redacted_at_once_and_passed_on_uncopied_without_secrets() {
        let s = Scrubber::new(vec![b"tok_abcdef".to_vec()]);
        let clean = Bytes::from_static(b"{\"ok\":true}");
        assert_eq!(s.redact(clean.clone()).as_ptr(), clean.as_ptr(), "the same buffer");
        assert_eq!(&s.redact(Bytes::from_static(b"a TOK_ABCDEF b tok_abcdef"))[..], b"a [REDACTED] b [REDACTED]");
        let none = Scrubber::new(Vec::new());
        assert_eq!(&none.redact(Bytes::from_static(b"tok_abcdef"))[..], b"tok_abcdef", "nothing injected");
    }

    #[test]
    fn header_values_are_checked_whole() {
        let s = Scrubber::new(vec![b"tok_abcdef".to_vec()]);
        assert!(s.contains(b"Bearer tok_abcdef"));
        assert!(!s.contains(b"Bearer tok_abc"));
    }
}
