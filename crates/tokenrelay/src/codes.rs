//! Stable error codes, each declared once: [`stable_codes!`](crate::stable_codes)
//! makes an enum whose variants are the codes, their strings, and the list
//! of them all, so code lists elsewhere (the npm package's types, the
//! README) are checked against what Rust declares, not against its sources.

/// Declares `enum $name` of stable codes: `Variant = "string"`, with
/// `as_str()` and `ALL`. Used by the core, the relay and the addon.
#[doc(hidden)]
#[macro_export]
macro_rules! stable_codes {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$doc:meta])* $variant:ident = $code:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $($(#[$doc])* $variant,)+
        }

        impl $name {
            /// Every code, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The code as it appears in errors, logs and responses.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $code,)+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

#[cfg(test)]
mod tests {
    crate::stable_codes! {
        enum Sample {
            /// One.
            First = "first_code",
            Second = "second_code",
        }
    }

    #[test]
    fn every_code_is_listed_once_with_its_string() {
        let all: Vec<&str> = Sample::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(all, ["first_code", "second_code"]);
        assert_eq!(Sample::Second.to_string(), "second_code");
    }
}
