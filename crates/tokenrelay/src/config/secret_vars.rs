//! Which environment variables hold secrets, by name only: for checks that
//! must find their values somewhere (e.g. in a site's build output) without
//! this crate ever handing the values out.

use super::Config;
use crate::param::Param;
use crate::token::Source;

/// An environment variable whose value is a secret, and what uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretVar {
    /// The variable name.
    pub name: String,
    /// What uses it, e.g. `upstream "getty" token source`.
    pub used_by: String,
}

impl Config {
    /// Every environment variable the upstreams' token sources read, once
    /// each, in upstream order. (Store variables are not part of the config:
    /// see [`crate::UPSTASH_VARS`] and [`crate::ENCRYPTION_KEY_VAR`].)
    pub fn secret_vars(&self) -> Vec<SecretVar> {
        let mut out: Vec<SecretVar> = Vec::new();
        for u in self.upstreams() {
            for param in params(&u.source) {
                if let Param::Env { name, .. } = param {
                    if !out.iter().any(|v| &v.name == name) {
                        out.push(SecretVar { name: name.clone(), used_by: format!("upstream \"{}\" token source", u.name) });
                    }
                }
            }
        }
        out
    }
}

fn params(source: &Source) -> Vec<&Param> {
    match source {
        Source::OAuth2(s) => [&s.client_id, &s.client_secret].into_iter().chain(s.extra.iter().map(|(_, v)| v)).collect(),
        Source::Json(s) => s.params(),
        Source::Static(key) => vec![key],
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Env};

    #[test]
    fn lists_each_env_reference_once_and_no_literal() {
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
        let vars: Vec<(String, String)> = config.secret_vars().into_iter().map(|v| (v.name, v.used_by)).collect();
        assert_eq!(
            vars,
            [
                ("KEY".to_owned(), "upstream \"getty\" token source".to_owned()),
                ("SECRET".to_owned(), "upstream \"getty\" token source".to_owned()),
                ("MAPS_SECRET".to_owned(), "upstream \"maps\" token source".to_owned()),
            ]
        );
    }
}
