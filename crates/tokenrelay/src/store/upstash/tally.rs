//! The arguments of the tally script (`script::TALLY_SCRIPT`) and the
//! reading of a hash's reply.

use std::collections::HashMap;

use serde_json::Value;

use super::millis;
use crate::store::{StoreError, Tallies};

/// The number of keys, the keys, then the arguments of `tallies`, as the script reads them.
pub(super) fn args(tallies: &Tallies) -> Vec<String> {
    let keys = tallies.fields.iter().map(|f| f.key.clone()).chain(tallies.distinct.iter().map(|d| d.key.clone()));
    let mut args: Vec<String> =
        std::iter::once(tallies.fields.len().saturating_add(tallies.distinct.len()).to_string())
            .chain(keys)
            .chain(std::iter::once(tallies.fields.len().to_string()))
            .collect();
    for f in &tallies.fields {
        args.extend([millis(f.ttl), f.fields.len().to_string()]);
        args.extend(f.fields.iter().flat_map(|(name, add)| [name.clone(), add.to_string()]));
    }
    for d in &tallies.distinct {
        args.extend([millis(d.ttl), d.members.len().to_string()]);
        args.extend(d.members.iter().cloned());
    }
    args
}

/// `EVAL script numkeys key… arg…` of `args`.
pub(super) fn command<'a>(script: &'a str, args: &'a [String]) -> Vec<&'a str> {
    ["EVAL", script].into_iter().chain(args.iter().map(String::as_str)).collect()
}

/// A `HGETALL` reply (a flat array of fields and values, as Upstash's REST
/// API gives it) as counts; a value that is not a count reads 0.
pub(super) fn hash(reply: Value) -> Result<HashMap<String, u64>, StoreError> {
    let Value::Array(items) = reply else { return Err(StoreError::Protocol("HGETALL reply is not an array")) };
    let text = |v: &Value| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
    Ok(items.chunks_exact(2).map(|pair| (text(&pair[0]), text(&pair[1]).parse().unwrap_or(0))).collect())
}
