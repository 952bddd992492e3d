//! Which environment variables hold secrets, by name only: for checks that
//! must find their values somewhere (e.g. in a site's build output) without
//! this crate ever handing the values out.

use super::Config;
use crate::param::Param;
use crate::token::Source;

/// An environment variable whose value is a secret, and the upstream whose
/// token source reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretVar {
    /// The variable name.
    pub name: String,
    /// The upstream's name.
    pub upstream: String,
}

impl Config {
    /// Every environment variable the upstreams' token sources read, once per
    /// upstream, in upstream order. (Store variables are not part of the
    /// config: see [`crate::UPSTASH_VARS`] and [`crate::ENCRYPTION_KEY_VAR`].)
    pub fn secret_vars(&self) -> Vec<SecretVar> {
        let mut out: Vec<SecretVar> = Vec::new();
        for u in self.upstreams() {
            for param in params(&u.source) {
                if let Param::Env { name, .. } = param
                    && !out.iter().any(|v| &v.name == name && v.upstream == u.name)
                {
                    out.push(SecretVar { name: name.clone(), upstream: u.name.clone() });
                }
            }
        }
        out
    }
}

fn params(source: &Source) -> Vec<&Param> {
    match source {
        Source::OAuth2(s) => {
            [&s.client_id, &s.client_secret].into_iter().chain(s.extra.iter().map(|(_, v)| v)).collect()
        }
        Source::Json(s) => s.params(),
        Source::Static(key) => vec![key],
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Env};

    #[test]
    fn lists_each_env_reference_once_per_upstream_and_no_literal() {
        let text = r#"
[upstreams.getty]
base_url = "https://api.example.com"
[upstreams.getty.token]
type = "oauth2_client_credentials"
url = "https://auth.example.com/token"
client_id = { env = "KEY" }
client_secret = { env = "SECRET" }
extra = { resource = "literal-resource" }

[upstreams.maps]
base_url = "https://maps.example.com"
[upstreams.maps.token]
type = "json"
url = "https://maps.example.com/token"
headers = { "X-Key" = { env = "KEY" } }
body = { secret = { env = "MAPS_SECRET" }, kind = "literal" }
token_pointer = "/token"
default_lifetime = "10m"
"#;
        let env = Env::from_pairs([("KEY", "k"), ("SECRET", "s"), ("MAPS_SECRET", "m")]);
        let config = Config::parse(text, "tokenrelay.toml", &env).unwrap();
        let vars: Vec<(String, String)> = config.secret_vars().into_iter().map(|v| (v.name, v.upstream)).collect();
        let expected = [("KEY", "getty"), ("SECRET", "getty"), ("KEY", "maps"), ("MAPS_SECRET", "maps")];
        assert_eq!(vars, expected.map(|(n, u)| (n.to_owned(), u.to_owned())));
    }
}
