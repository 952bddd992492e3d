//! The forms a secret takes when a build writes it into its output: as is,
//! or escaped for the place it was written to. The scan searches every form
//! in one pass; these are the byte strings it looks for.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// What `encodeURIComponent` escapes: everything but `A-Z a-z 0-9 - _ . ! ~ * ' ( )`.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');
/// What RFC 3986 §2.3 leaves unreserved, the strictest common encoder (e.g. `rawurlencode`).
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
/// What `application/x-www-form-urlencoded` keeps (WHATWG URL §5.2, `URLSearchParams`); space becomes `+`.
const FORM: &AsciiSet = &NON_ALPHANUMERIC.remove(b'*').remove(b'-').remove(b'.').remove(b'_').remove(b' ');

/// Every form of `secret` the scan searches for, each once: raw;
/// percent-encoded (as `encodeURIComponent` and as RFC 3986 unreserved
/// writes it, hex digits upper and lower case); form-encoded; JSON-escaped
/// (with `/` as is, `\/` or `\u002F`); HTML-escaped (the entity sets of
/// common escapers); and base64, standard and URL-safe (see [`base64_forms`]).
pub(super) fn forms(secret: &str) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = vec![secret.as_bytes().to_vec()];
    for set in [URI_COMPONENT, UNRESERVED] {
        let upper = utf8_percent_encode(secret, set).to_string();
        out.push(lower_hex(&upper).into_bytes());
        out.push(upper.into_bytes());
    }
    out.push(utf8_percent_encode(secret, FORM).to_string().replace(' ', "+").into_bytes());
    let json = json_escape(secret);
    for slash in ["\\/", "\\u002F", "\\u002f"] {
        out.push(json.replace('/', slash).into_bytes());
    }
    out.push(json.into_bytes());
    for entities in HTML_ESCAPERS {
        out.push(html_escape(secret, entities).into_bytes());
    }
    out.extend(base64_forms(secret.as_bytes()));
    let mut unique: Vec<Vec<u8>> = Vec::with_capacity(out.len());
    for form in out {
        if !form.is_empty() && !unique.contains(&form) {
            unique.push(form);
        }
    }
    unique
}

/// `%2F` as `%2f`: some encoders write lower-case hex digits (RFC 3986 §2.1 allows both).
fn lower_hex(encoded: &str) -> String {
    let mut out = String::with_capacity(encoded.len());
    let mut hex_left = 0;
    for c in encoded.chars() {
        if c == '%' {
            hex_left = 2;
            out.push(c);
        } else if hex_left > 0 {
            hex_left -= 1;
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The inside of a JSON string holding `s` (RFC 8259 §7), as `JSON.stringify` writes it.
fn json_escape(s: &str) -> String {
    let quoted = serde_json::Value::String(s.to_owned()).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}

/// Characters HTML escapers replace, and with what: lodash/`he`/Python
/// `html.escape`, OWASP's (also `/`), and Go's `html.EscapeString` (numeric quotes).
const HTML_ESCAPERS: [&[(char, &str)]; 3] = [
    &[('&', "&amp;"), ('<', "&lt;"), ('>', "&gt;"), ('"', "&quot;"), ('\'', "&#39;")],
    &[('&', "&amp;"), ('<', "&lt;"), ('>', "&gt;"), ('"', "&quot;"), ('\'', "&#x27;"), ('/', "&#x2F;")],
    &[('&', "&amp;"), ('<', "&lt;"), ('>', "&gt;"), ('"', "&#34;"), ('\'', "&#39;")],
];

fn html_escape(s: &str, entities: &[(char, &str)]) -> String {
    s.chars()
        .map(|c| entities.iter().find(|(from, _)| *from == c).map_or_else(|| c.to_string(), |(_, to)| (*to).to_owned()))
        .collect()
}

/// The base64 text that any encoding of `secret` contains, whatever comes
/// before or after it (e.g. `Basic base64(id:secret)`): base64 turns each
/// 3 bytes into 4 characters, so the characters depend on the secret's
/// offset modulo 3 in the encoded whole. For each offset, the characters
/// determined by the secret alone, in the standard and the URL-safe
/// alphabet (RFC 4648 §4, §5).
pub(super) fn base64_forms(secret: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for offset in 0..3 {
        let mut shifted = vec![0u8; offset];
        shifted.extend_from_slice(secret);
        for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            let text = engine.encode(&shifted);
            // Characters carrying bits of the filler before the secret...
            let start = [0, 2, 3][offset];
            // ...and the last one, when it also carries bits of whatever follows.
            let end = if shifted.len() % 3 == 0 { text.len() } else { text.len() - 1 };
            if start < end {
                out.push(text.as_bytes()[start..end].to_vec());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has(forms: &[Vec<u8>], text: &str) -> bool {
        forms.iter().any(|f| text.as_bytes().windows(f.len()).any(|w| w == f.as_slice()))
    }

    #[test]
    fn each_escaping_a_build_tool_does_is_a_form() {
        let f = forms("a/b+c d'<&>\"é");
        for written in [
            "a/b+c d'<&>\"é",
            "a%2Fb%2Bc%20d'%3C%26%3E%22%C3%A9",
            "a%2fb%2bc%20d'%3c%26%3e%22%c3%a9",
            "a%2Fb%2Bc%20d%27%3C%26%3E%22%C3%A9",
            "a%2Fb%2Bc+d%27%3C%26%3E%22%C3%A9",
            "a/b+c d'<&>\\\"é",
            "a\\/b+c d'<&>\\\"é",
            "a\\u002Fb+c d'<&>\\\"é",
            "a/b+c d&#39;&lt;&amp;&gt;&quot;é",
            "a&#x2F;b+c d&#x27;&lt;&amp;&gt;&quot;é",
            "a/b+c d&#39;&lt;&amp;&gt;&#34;é",
        ] {
            assert!(has(&f, written), "{written}");
        }
        assert_eq!(forms("plain-token-123").iter().filter(|p| p.as_slice() == b"plain-token-123").count(), 1);
    }

    #[test]
    fn base64_forms_find_the_secret_at_any_offset_in_a_longer_encoded_text() {
        use base64::engine::general_purpose::{STANDARD, URL_SAFE};
        let secret = b"s3cr?t>value~~";
        let patterns = base64_forms(secret);
        for prefix in ["", "a", "ab", "abc", "user:", "x:y"] {
            for suffix in ["", "!", "!!", "!!!"] {
                let whole = [prefix.as_bytes(), secret, suffix.as_bytes()].concat();
                for encoded in [STANDARD.encode(&whole), URL_SAFE.encode(&whole)] {
                    assert!(has(&patterns, &encoded), "{prefix}|{suffix}: {encoded}");
                }
            }
        }
    }
}
