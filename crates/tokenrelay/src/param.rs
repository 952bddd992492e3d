//! Configured values that may be secret.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// A [`Param`] as the config file writes it: a literal value or
/// `{ env = "NAME" }`, resolved by the config's builder.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawParam {
    Literal(String),
    Env { env: String },
}

/// A configured value: a literal from the config file, or a value read from
/// an environment variable. Values from the environment are always treated as
/// secrets (Getty's API key doubles as client id and header value), so they
/// are redacted from `Debug` and only exposed where they go on the wire.
#[derive(Clone)]
pub(crate) enum Param {
    Literal(String),
    Env { name: String, value: SecretString },
}

impl Param {
    /// The value to put on the wire.
    pub(crate) fn expose(&self) -> &str {
        match self {
            Param::Literal(v) => v,
            Param::Env { value, .. } => value.expose_secret(),
        }
    }

    /// The secret value, if this one came from the environment.
    pub(crate) fn secret(&self) -> Option<&str> {
        match self {
            Param::Literal(_) => None,
            Param::Env { value, .. } => Some(value.expose_secret()),
        }
    }

    /// A redacted description for summaries: the literal, or the variable name.
    pub(crate) fn describe(&self) -> String {
        match self {
            Param::Literal(v) => v.clone(),
            Param::Env { name, .. } => format!("${name} (redacted)"),
        }
    }
}

impl std::fmt::Debug for Param {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_env_value_names_the_variable_not_the_value() {
        let p = Param::Env { name: "API_SECRET".into(), value: SecretString::from("hunter2") };
        assert_eq!(format!("{p:?}"), "$API_SECRET (redacted)");
        assert_eq!(p.expose(), "hunter2");
    }
}
