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

    /// Whether some path may match both patterns. Exact over segments; the
    /// relay's path checks refuse some of those paths (dot segments, `;`
    /// parameters…), so a "may" here errs towards overlap, never away from it.
    pub(crate) fn may_overlap(&self, other: &Self) -> bool {
        overlap(&self.segments, &other.segments)
    }
}

/// Whether one segment sequence matches both glob lists: each step consumes
/// one glob or one segment matched by both sides, so the recursion ends, and
/// with one `**` per pattern it stays quadratic in their lengths.
fn overlap(a: &[Glob], b: &[Glob]) -> bool {
    match (a.split_first(), b.split_first()) {
        (None, None) => true,
        // A `**` matches no more segments…
        (Some((Glob::Any, rest)), _) if overlap(rest, b) => true,
        (_, Some((Glob::Any, rest))) if overlap(a, rest) => true,
        // …or the segment the other side's next glob matches.
        (Some((Glob::Any, _)), Some((other, rest))) if *other != Glob::Any => overlap(a, rest),
        (Some((other, rest)), Some((Glob::Any, _))) if *other != Glob::Any => overlap(rest, b),
        (Some((x, ra)), Some((y, rb))) => one_segment_matches_both(x, y) && overlap(ra, rb),
        _ => false,
    }
}

fn one_segment_matches_both(a: &Glob, b: &Glob) -> bool {
    match (a, b) {
        (Glob::Literal(x), Glob::Literal(y)) => x == y,
        _ => true,
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
    fn overlap_is_found_wherever_one_path_matches_both() {
        let overlap = |a: &str, b: &str| {
            let (a, b) = (RoutePattern::parse(a).unwrap(), RoutePattern::parse(b).unwrap());
            assert_eq!(a.may_overlap(&b), b.may_overlap(&a), "symmetric");
            a.may_overlap(&b)
        };
        for (a, b) in [
            ("/v1/me/**", "/v1/**"),
            ("/v1/me", "/v1/*"),
            ("/a/*/c", "/a/b/*"),
            ("/**", "/x/y/z"),
            ("/a/**/z", "/a/b/**"),
            ("/a/**/z", "/**/b/z"),
            ("/search/**", "/search"),
            ("/*/*", "/**/x"),
        ] {
            assert!(overlap(a, b), "{a} and {b}");
        }
        for (a, b) in [
            ("/v1/me/**", "/v2/**"),
            ("/a/*", "/a/*/*"),
            ("/a/**/z", "/a/b/c"),
            ("/search/images", "/search/videos"),
            ("/a/*/c", "/a/b/d"),
            ("/**/x", "/y"),
        ] {
            assert!(!overlap(a, b), "{a} and {b}");
        }
    }

    proptest::proptest! {
        /// Never "no overlap" where a path matches both (the direction the caller check relies on).
        #[test]
        fn a_path_matching_both_patterns_is_an_overlap(
            a in proptest::collection::vec(proptest::sample::select(vec!["a", "b", "*", "**"]), 1..5),
            b in proptest::collection::vec(proptest::sample::select(vec!["a", "b", "*", "**"]), 1..5),
            path in proptest::collection::vec(proptest::sample::select(vec!["a", "b", "c"]), 0..6),
        ) {
            let parse = |p: &[&str]| RoutePattern::parse(&format!("/{}", p.join("/")));
            if let (Ok(a), Ok(b)) = (parse(&a), parse(&b))
                && a.matches(&path)
                && b.matches(&path)
            {
                proptest::prop_assert!(a.may_overlap(&b), "{} and {} both match /{}", a.as_str(), b.as_str(), path.join("/"));
            }
        }
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
