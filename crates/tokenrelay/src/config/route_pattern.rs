//! The route pattern language of `[upstreams.<name>.relay] routes`: literal
//! segments, `*` for exactly one segment and `**` for any number of them.
//!
//! Literal segments never contain `;`: a path parameter (RFC 3986 §3.3,
//! `/a;v=1`) is only reachable through `*` or `**` on a route that sets
//! `path_params = true`.

/// A path pattern below the upstream's base URL: literal segments, `*` for
/// exactly one segment and `**` for any number of segments (including none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RoutePattern {
    text: String,
    segments: Vec<Glob>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Glob {
    Literal(String),
    One,
    Any,
}

impl RoutePattern {
    /// Parses `/search/*/images/**`; the error says what is wrong.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let rest = text.strip_prefix('/').ok_or("must start with '/'")?;
        let segments = rest
            .split('/')
            .map(|s| match s {
                "*" => Ok(Glob::One),
                "**" => Ok(Glob::Any),
                "" => Err("must not contain empty segments (\"//\" or a trailing '/')".to_owned()),
                "." | ".." => Err("must not contain \".\" or \"..\" segments".to_owned()),
                s if s.contains('*') => Err(format!("\"{s}\": '*' and '**' must be whole segments")),
                s if !s.bytes().all(is_pattern_byte) => Err(format!(
                    "\"{s}\": use only letters, digits and - . _ ~ ! $ & ' ( ) + , = : in literal segments"
                )),
                s => Ok(Glob::Literal(s.to_owned())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        // One `**` keeps matching linear in the path length.
        if segments.iter().filter(|g| **g == Glob::Any).count() > 1 {
            return Err("may contain '**' only once".to_owned());
        }
        Ok(Self { text: text.to_owned(), segments })
    }

    /// The pattern as written, for logs and errors.
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the already validated path segments match.
    pub(crate) fn matches(&self, segments: &[&str]) -> bool {
        matches(&self.segments, segments)
    }
}

fn matches(globs: &[Glob], segments: &[&str]) -> bool {
    let Some((glob, rest)) = globs.split_first() else { return segments.is_empty() };
    match (glob, segments.split_first()) {
        (Glob::Any, _) => (0..=segments.len()).any(|skip| matches(rest, &segments[skip..])),
        (Glob::One, Some((_, tail))) => matches(rest, tail),
        (Glob::Literal(l), Some((first, tail))) => l == first && matches(rest, tail),
        (_, None) => false,
    }
}

/// Unreserved and sub-delimiter characters of RFC 3986 §2 except ';', plus ':'.
fn is_pattern_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()+,=:".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(path: &str) -> Vec<&str> {
        path.trim_start_matches('/').split('/').collect()
    }

    #[test]
    fn single_star_matches_exactly_one_segment() {
        let p = RoutePattern::parse("/images/*").unwrap();
        assert!(p.matches(&segs("/images/42")));
        assert!(!p.matches(&segs("/images/42/download")));
        assert!(!p.matches(&segs("/images")));
    }

    #[test]
    fn double_star_matches_any_depth_including_none() {
        let p = RoutePattern::parse("/search/**").unwrap();
        assert!(p.matches(&segs("/search")));
        assert!(p.matches(&segs("/search/images")));
        assert!(p.matches(&segs("/search/images/creative")));
        assert!(!p.matches(&segs("/searches/images")));
        let middle = RoutePattern::parse("/a/**/z").unwrap();
        assert!(middle.matches(&segs("/a/z")) && middle.matches(&segs("/a/b/c/z")));
        assert!(!middle.matches(&segs("/a/b/c")));
    }

    #[test]
    fn bad_patterns_say_why() {
        assert_eq!(RoutePattern::parse("search").unwrap_err(), "must start with '/'");
        assert!(RoutePattern::parse("/a/../b").unwrap_err().contains("\"..\""));
        assert!(RoutePattern::parse("/a//b").unwrap_err().contains("empty segments"));
        assert!(RoutePattern::parse("/img*.png").unwrap_err().contains("whole segments"));
        assert!(RoutePattern::parse("/a%2fb").unwrap_err().contains("literal segments"));
        assert!(RoutePattern::parse("/**/x/**").unwrap_err().contains("only once"));
        assert!(RoutePattern::parse("/a/..;/b").unwrap_err().contains("literal segments"));
    }
}
