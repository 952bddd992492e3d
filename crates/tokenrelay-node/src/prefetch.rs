//! `prefetch`: get each chosen upstream's token through the broker, so the
//! shared store is warm for browse-time functions, and hand back the tokens
//! a build asked for, each valid for at least the build margin.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use napi::Either;
use napi_derive::napi;
use tokenrelay::{Broker, ENCRYPTION_KEY_VAR, Token, UPSTASH_VARS, VERCEL_KV_VARS};
use tokenrelay_site::{Site, SiteOptions, StoreChoice, is_env_var_name};

use crate::error::AddonError;

/// How long a prefetched token must stay valid by default: long enough for
/// most static builds (Netlify's default build timeout is 15 minutes), short
/// enough for the common 30-minute tokens.
pub const DEFAULT_BUILD_MARGIN: Duration = Duration::from_secs(15 * 60);

/// Options of `prefetch`.
#[napi(object)]
#[derive(Debug, Default, Clone)]
pub struct PrefetchOptions {
    /// The config file, relative to `cwd`. Default: `$TOKENRELAY_CONFIG`, else `tokenrelay.toml`.
    pub config_path: Option<String>,
    /// The site's directory, where the config and `.env` are looked up. Default: the current directory.
    pub cwd: Option<String>,
    /// Variables that override the process environment; `""` unsets one.
    pub env: Option<HashMap<String, String>>,
    /// The upstreams to prefetch. Default: every configured upstream.
    pub upstreams: Option<Vec<String>>,
    /// Which tokens to hand back, as `{ upstream: "ENV_VAR_NAME" }`. Default: every
    /// prefetched upstream, as `TOKENRELAY_<UPSTREAM>_TOKEN`; `{}` hands back none.
    pub env_vars: Option<HashMap<String, String>>,
    /// How long every token must stay valid: one expiring sooner is replaced.
    /// Seconds, or a duration such as `"15m"`. Default: 15 minutes.
    pub build_margin: Option<Either<String, f64>>,
    /// Whether to go through the shared store (Upstash), warming it for
    /// browse-time functions. `false` keeps the build on a local file store. Default: `true`.
    pub warm_store: Option<bool>,
}

/// What `prefetch` did. Only `env` holds secrets.
#[napi(object)]
#[derive(Debug, Clone)]
pub struct PrefetchReport {
    /// The store used, e.g. `upstash https://… (AES-256-GCM)` or `local file store … (AES-256-GCM)`.
    pub store: String,
    /// Whether that store is shared with browse-time functions (Upstash), i.e. whether it was warmed.
    pub shared_store: bool,
    /// One entry per prefetched upstream, in config order.
    pub tokens: Vec<PrefetchedToken>,
    /// The tokens asked for, by environment variable name. Never log this.
    pub env: HashMap<String, String>,
}

/// One prefetched token, described without its value.
#[napi(object)]
#[derive(Debug, Clone, PartialEq)]
pub struct PrefetchedToken {
    /// The upstream's name.
    pub upstream: String,
    /// The variable the token is handed back as, if it was asked for.
    pub env_var: Option<String>,
    /// When the token expires (RFC 3339, UTC); `null` for static keys.
    pub expires_at: Option<String>,
    /// Whole seconds until then; `null` for static keys.
    pub expires_in_seconds: Option<i64>,
    /// Where the broker found it.
    #[napi(ts_type = "'memory' | 'store' | 'fetched' | 'direct' | 'static'")]
    pub outcome: String,
}

/// The default variable for an upstream's token: `TOKENRELAY_<UPSTREAM>_TOKEN`
/// (upper case, `-` as `_`; config names are already `[a-z0-9_-]`).
pub fn default_env_var(upstream: &str) -> String {
    format!("TOKENRELAY_{}_TOKEN", upstream.to_ascii_uppercase().replace('-', "_"))
}

/// Runs `prefetch`.
pub async fn prefetch(options: PrefetchOptions) -> Result<PrefetchReport, AddonError> {
    let margin = build_margin(options.build_margin.as_ref())?;
    let store = if options.warm_store.unwrap_or(true) { StoreChoice::AsConfigured } else { StoreChoice::LocalOnly };
    let site = Site::resolve(SiteOptions::of(&options.config_path, &options.cwd, &options.env), store)?;
    let broker = Broker::from_env(&site.env)?;
    let plan = Plan::new(&broker, options.upstreams.as_deref(), options.env_vars.as_ref())?;

    let fetches = plan.upstreams.iter().map(|u| broker.token_valid_for(u, margin));
    let results = futures_util::future::join_all(fetches).await;
    let mut report = PrefetchReport {
        store: broker.summary().store,
        shared_store: broker.has_remote_store(),
        tokens: Vec::new(),
        env: HashMap::new(),
    };
    for (upstream, result) in plan.upstreams.iter().zip(results) {
        let token = result.map_err(|e| name_credentials(&broker, upstream, e))?;
        crate::issued::remember(upstream, "prefetch", &token);
        let env_var = plan.env_vars.get(upstream).cloned();
        if let Some(name) = &env_var {
            report.env.insert(name.clone(), token.expose().to_owned());
        }
        report.tokens.push(describe(upstream, env_var, &token));
    }
    Ok(report)
}

/// What to prefetch and which tokens to hand back, validated against the config.
struct Plan {
    /// In config order, each once.
    upstreams: Vec<String>,
    /// Upstream → variable.
    env_vars: BTreeMap<String, String>,
}

impl Plan {
    fn new(
        broker: &Broker,
        upstreams: Option<&[String]>,
        env_vars: Option<&HashMap<String, String>>,
    ) -> Result<Plan, AddonError> {
        let configured: Vec<&str> = broker.config().upstreams().map(|u| u.name()).collect();
        let unknown = |option: &str, name: &str| {
            let e = unknown_upstream(broker, name);
            AddonError::new(e.code(), format!("option {option}: {}", e.message()))
        };
        if let Some(name) = upstreams.into_iter().flatten().find(|n| !configured.contains(&n.as_str())) {
            return Err(unknown("upstreams", name));
        }
        let chosen: Vec<String> = configured
            .iter()
            .filter(|n| upstreams.is_none_or(|list| list.iter().any(|u| u == *n)))
            .map(|n| (*n).to_owned())
            .collect();

        let env_vars: BTreeMap<String, String> = match env_vars {
            None => chosen.iter().map(|u| (u.clone(), default_env_var(u))).collect(),
            Some(map) => map.iter().map(|(u, v)| (u.clone(), v.clone())).collect(),
        };
        let reserved = reserved_vars(broker);
        let mut taken: BTreeMap<&str, &str> = BTreeMap::new();
        for (upstream, var) in &env_vars {
            let option = format!("envVars.{upstream}");
            if !configured.contains(&upstream.as_str()) {
                return Err(unknown("envVars", upstream));
            }
            if !chosen.contains(upstream) {
                return Err(AddonError::invalid_option(
                    &option,
                    format!("upstream \"{upstream}\" is not prefetched: add it to upstreams"),
                ));
            }
            if !is_env_var_name(var) {
                return Err(AddonError::invalid_option(
                    &option,
                    format!(
                        "\"{var}\" is not a valid variable name (letters, digits and _, not starting with a digit)"
                    ),
                ));
            }
            if let Some(why) = reserved.get(var.as_str()) {
                return Err(AddonError::invalid_option(
                    &option,
                    format!("{var} is taken by {why}; choose another name for the token"),
                ));
            }
            if let Some(other) = taken.insert(var, upstream) {
                return Err(AddonError::invalid_option(
                    &option,
                    format!("{var} is also the variable of upstream \"{other}\"; give each token its own"),
                ));
            }
        }
        Ok(Plan { upstreams: chosen, env_vars })
    }
}

/// `name` is not configured: the error lists what is.
pub(crate) fn unknown_upstream(broker: &Broker, name: &str) -> AddonError {
    let known: Vec<String> = broker.config().upstreams().map(|u| format!("\"{}\"", u.name())).collect();
    let file = broker.config().file().display();
    AddonError::new(
        tokenrelay::ErrorCode::UnknownUpstream.as_str(),
        format!("unknown upstream \"{name}\": {file} configures {}", known.join(", ")),
    )
}

/// A rejection names the variables to check: the message alone says which
/// upstream, not where its credentials come from.
pub(crate) fn name_credentials(broker: &Broker, upstream: &str, err: tokenrelay::Error) -> AddonError {
    if !matches!(err, tokenrelay::Error::TokenRejected { .. }) {
        return err.into();
    }
    let vars: Vec<String> = broker
        .config()
        .secret_vars()
        .into_iter()
        .filter(|v| v.upstream == upstream && v.is_token_credential())
        .map(|v| format!("${}", v.name))
        .collect();
    let e = AddonError::from(err);
    if vars.is_empty() {
        return e;
    }
    AddonError::new(e.code(), format!("{}; check the values of {}", e.message(), vars.join(", ")))
}

/// Variables a token must never overwrite, with what uses them.
fn reserved_vars(broker: &Broker) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for v in broker.config().secret_vars() {
        out.entry(v.name).or_insert_with(|| format!("a credential of upstream \"{}\"", v.upstream));
    }
    let store = [UPSTASH_VARS.0, UPSTASH_VARS.1, VERCEL_KV_VARS.0, VERCEL_KV_VARS.1, ENCRYPTION_KEY_VAR];
    out.extend(store.into_iter().map(|v| (v.to_owned(), "the shared store's settings".to_owned())));
    out.insert(tokenrelay::CONFIG_PATH_VAR.to_owned(), "the config file's path".to_owned());
    out
}

/// Parses the build margin: seconds (a number, or a string of digits) or a
/// duration such as `"15m"` or `"1h 30m"`.
pub(crate) fn build_margin(value: Option<&Either<String, f64>>) -> Result<Duration, AddonError> {
    let invalid = |shown: String| {
        AddonError::invalid_option("buildMargin", format!("{shown} is not a duration: use seconds or e.g. \"15m\""))
    };
    match value {
        None => Ok(DEFAULT_BUILD_MARGIN),
        Some(Either::B(secs)) if secs.is_finite() && *secs >= 0.0 && *secs < u32::MAX as f64 => {
            Ok(Duration::from_secs_f64(*secs))
        }
        Some(Either::B(secs)) => Err(invalid(secs.to_string())),
        Some(Either::A(text)) => {
            let text = text.trim();
            match text.parse::<u32>() {
                Ok(secs) => Ok(Duration::from_secs(secs.into())),
                Err(_) => humantime::parse_duration(text).map_err(|_| invalid(format!("\"{text}\""))),
            }
        }
    }
}

fn describe(upstream: &str, env_var: Option<String>, token: &Token) -> PrefetchedToken {
    let expires_in = token.expires_at().map(|at| at.duration_since(SystemTime::now()).unwrap_or_default());
    PrefetchedToken {
        upstream: upstream.to_owned(),
        env_var,
        expires_at: token.expires_at().map(|at| humantime::format_rfc3339_seconds(at).to_string()),
        expires_in_seconds: expires_in.map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        outcome: token.outcome().as_str().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_variable_names_are_upper_case_with_underscores() {
        assert_eq!(default_env_var("getty"), "TOKENRELAY_GETTY_TOKEN");
        assert_eq!(default_env_var("maps-v2"), "TOKENRELAY_MAPS_V2_TOKEN");
    }

    #[test]
    fn build_margin_takes_seconds_or_a_duration() {
        let m = |v: Either<String, f64>| build_margin(Some(&v));
        assert_eq!(build_margin(None), Ok(DEFAULT_BUILD_MARGIN));
        assert_eq!(m(Either::B(90.0)), Ok(Duration::from_secs(90)));
        assert_eq!(m(Either::A("900".into())), Ok(Duration::from_secs(900)));
        assert_eq!(m(Either::A(" 1h 30m ".into())), Ok(Duration::from_secs(5400)));
        let err = m(Either::A("soon".into())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "[invalid_options] option buildMargin: \"soon\" is not a duration: use seconds or e.g. \"15m\""
        );
        assert_eq!(m(Either::B(-1.0)).unwrap_err().code(), "invalid_options");
        assert_eq!(m(Either::B(f64::NAN)).unwrap_err().code(), "invalid_options");
    }
}
