//! An upstream's credentials, listed once: its token source's
//! ([`crate::token::Source::credentials`]) and the relay's extra headers.
//! The redacted summary and the secret variables (by name only, for checks
//! that must find their values somewhere, e.g. in a site's build output)
//! derive from this list, so they cannot disagree.

use super::{Config, Upstream};
use crate::param::Param;
use crate::token::Credential;

/// An environment variable whose value is a secret, and where the config uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretVar {
    /// The variable name.
    pub name: String,
    /// The upstream's name.
    pub upstream: String,
    /// The first config field that reads it, e.g. `token.client_secret` or `relay.headers.api-key`.
    pub field: String,
}

impl SecretVar {
    /// Whether the upstream's token source sends it (rather than only the relay).
    pub fn is_token_credential(&self) -> bool {
        self.field.starts_with(TOKEN_FIELDS)
    }
}

/// The prefix of the token source's fields.
const TOKEN_FIELDS: &str = "token.";

impl Upstream {
    /// Every credential, by config field: the token source's, then the
    /// relay's extra headers (named as sent, lower case).
    pub(crate) fn credentials(&self) -> Vec<Credential<'_>> {
        let mut out = self.source.credentials();
        if let Some(relay) = &self.relay {
            out.extend(relay.headers.iter().map(|(name, p)| (format!("relay.headers.{name}"), p)));
        }
        out
    }
}

impl Config {
    /// Every environment variable the upstreams read a credential from, once
    /// per upstream, in upstream order. (Store variables are not part of the
    /// config: see [`crate::UPSTASH_VARS`] and [`crate::ENCRYPTION_KEY_VAR`].)
    pub fn secret_vars(&self) -> Vec<SecretVar> {
        let mut out: Vec<SecretVar> = Vec::new();
        for u in self.upstreams() {
            for (field, param) in u.credentials() {
                if let Param::Env { name, .. } = param
                    && !out.iter().any(|v| &v.name == name && v.upstream == u.name)
                {
                    out.push(SecretVar { name: name.clone(), upstream: u.name.clone(), field });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Env};

    const TEXT: &str = r#"
[upstreams.getty]
base_url = "https://api.example.com"
[upstreams.getty.token]
type = "oauth2_client_credentials"
url = "https://auth.example.com/token"
client_id = { env = "KEY" }
client_secret = { env = "SECRET" }
extra = { resource = "literal-resource" }
[upstreams.getty.relay]
routes = [{ path = "/images/**" }]
headers = { Api-Key = { env = "RELAY_KEY" }, X-Plain = "literal" }

[upstreams.maps]
base_url = "https://maps.example.com"
[upstreams.maps.token]
type = "json"
url = "https://maps.example.com/token"
headers = { "X-Key" = { env = "KEY" } }
body = { secret = { env = "MAPS_SECRET" }, kind = "literal", list = [{ env = "MAPS_OTHER" }] }
token_pointer = "/token"
default_lifetime = "10m"
"#;

    fn config() -> Config {
        let vars = [("KEY", "k"), ("SECRET", "s"), ("RELAY_KEY", "r"), ("MAPS_SECRET", "m"), ("MAPS_OTHER", "o")];
        Config::parse(TEXT, "tokenrelay.toml", &Env::from_pairs(vars)).unwrap()
    }

    #[test]
    fn secret_vars_list_each_env_reference_once_per_upstream_with_its_field_and_no_literal() {
        let vars: Vec<(String, String, String)> =
            config().secret_vars().into_iter().map(|v| (v.name, v.upstream, v.field)).collect();
        let expected = [
            ("KEY", "getty", "token.client_id"),
            ("SECRET", "getty", "token.client_secret"),
            ("RELAY_KEY", "getty", "relay.headers.api-key"),
            ("KEY", "maps", "token.headers.X-Key"),
            ("MAPS_OTHER", "maps", "token.body.list[0]"),
            ("MAPS_SECRET", "maps", "token.body.secret"),
        ];
        assert_eq!(vars, expected.map(|(n, u, f)| (n.to_owned(), u.to_owned(), f.to_owned())));
    }

    #[test]
    fn the_summary_lists_the_same_credentials_redacted() {
        let summary = config().summary("local".into());
        let fields = |i: usize| -> Vec<(String, String)> { summary.upstreams[i].credentials.clone() };
        let getty = [
            ("token.client_id", "$KEY (redacted)"),
            ("token.client_secret", "$SECRET (redacted)"),
            ("token.extra.resource", "literal-resource"),
            ("relay.headers.api-key", "$RELAY_KEY (redacted)"),
            ("relay.headers.x-plain", "literal"),
        ];
        assert_eq!(fields(0), getty.map(|(f, v)| (f.to_owned(), v.to_owned())));
        let maps = [
            ("token.headers.X-Key", "$KEY (redacted)"),
            ("token.body.list[0]", "$MAPS_OTHER (redacted)"),
            ("token.body.secret", "$MAPS_SECRET (redacted)"),
        ];
        assert_eq!(fields(1), maps.map(|(f, v)| (f.to_owned(), v.to_owned())));
    }
}
