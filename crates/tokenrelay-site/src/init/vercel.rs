//! Vercel: the function `api/relay.rs`, its `[[bin]]` and `tokenrelay`
//! dependency in the root `Cargo.toml` (where Vercel's Rust builder,
//! `@vercel/rust`, looks), and in `vercel.json` the rewrite of
//! `/api/relay/:path*` to it and `tokenrelay.toml` shipped beside it.

use jsonc_parser::ParseOptions;
use jsonc_parser::cst::{CstInputValue, CstNode, CstObject, CstRootNode};
use tokenrelay::DEFAULT_CONFIG_FILE;
use tokenrelay::relay::MOUNT;
use toml_edit::{Array, ArrayOfTables, DocumentMut, InlineTable, Item, Table, value};

use super::{Plan, conflict, failed};
use crate::Error;
use crate::claims_mount;

const VERCEL_JSON: &str = "vercel.json";
const CARGO_TOML: &str = "Cargo.toml";
const FUNCTION: &str = "api/relay.rs";
const FUNCTION_TEMPLATE: &str = include_str!("templates/relay.rs");
/// What the function's `main` calls; a file calling it is tokenrelay's function.
const FUNCTION_CALL: &str = "tokenrelay::vercel::run";
/// The binary's name: @vercel/rust builds `--bin <file stem>`.
const BIN: &str = "relay";
const REWRITE_SOURCE: &str = "/api/relay/:path*";
const CRATE: &str = "tokenrelay";
const FEATURE: &str = "vercel";
/// The `tokenrelay` crate this package was released with (one workspace version).
const CRATE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Plans the function, `Cargo.toml` and `vercel.json`; returns the steps left to the user.
pub(crate) fn plan(plan: &mut Plan) -> Result<Vec<String>, Error> {
    plan_function(plan)?;
    plan_cargo_toml(plan)?;
    plan_vercel_json(plan)?;
    Ok(vec![
        "connect a store: add Upstash for Redis from the Vercel Marketplace to the project \
         (it sets KV_REST_API_URL and KV_REST_API_TOKEN)"
            .to_owned(),
    ])
}

fn plan_function(plan: &mut Plan) -> Result<(), Error> {
    match plan.read(FUNCTION)? {
        None => plan.set(
            FUNCTION,
            None,
            FUNCTION_TEMPLATE.to_owned(),
            "the relay function (calls tokenrelay::vercel::run)".into(),
        )?,
        Some(text) if text.contains(FUNCTION_CALL) => {}
        Some(_) => {
            return Err(conflict(
                FUNCTION,
                format!("exists and does not call {FUNCTION_CALL}: rename it, or make it the relay (see README)"),
            ));
        }
    }
    Ok(())
}

fn plan_cargo_toml(plan: &mut Plan) -> Result<(), Error> {
    let before = plan.read(CARGO_TOML)?;
    let text = before.clone().unwrap_or_else(|| starter_manifest(&plan.dir));
    let mut doc: DocumentMut = text.parse().map_err(|e| failed(CARGO_TOML, format!("is not valid TOML: {e}")))?;
    if doc.get("package").is_none() {
        return Err(conflict(
            CARGO_TOML,
            format!(
                "has no [package] (a workspace-only manifest), but Vercel builds {FUNCTION} as a [[bin]] of this file's package"
            ),
        ));
    }
    let mut added = Vec::new();

    let bins = match doc.get("bin") {
        None => None,
        Some(item) => Some(
            item.as_array_of_tables().ok_or_else(|| conflict(CARGO_TOML, "`bin` is not written as [[bin]] tables"))?,
        ),
    };
    let mut has_bin = false;
    for bin in bins.iter().flat_map(|b| b.iter()) {
        let name = bin.get("name").and_then(Item::as_str);
        let path = bin.get("path").and_then(Item::as_str);
        match (name == Some(BIN), path == Some(FUNCTION)) {
            (true, true) => has_bin = true,
            (true, false) => {
                return Err(conflict(
                    CARGO_TOML,
                    format!("[[bin]] \"{BIN}\" has path {path:?}; the relay needs {FUNCTION:?}"),
                ));
            }
            (false, true) => {
                return Err(conflict(
                    CARGO_TOML,
                    format!("[[bin]] {name:?} builds {FUNCTION}; Vercel needs it named \"{BIN}\""),
                ));
            }
            (false, false) => {}
        }
    }
    if !has_bin {
        let mut bin = Table::new();
        bin["name"] = value(BIN);
        bin["path"] = value(FUNCTION);
        bin.decor_mut().set_prefix("\n# The Vercel function /api/relay (npx tokenrelay init).\n");
        if let Some(bins) =
            doc.entry("bin").or_insert(Item::ArrayOfTables(ArrayOfTables::new())).as_array_of_tables_mut()
        {
            bins.push(bin);
        }
        added.push(format!("[[bin]] {BIN} = {FUNCTION}"));
    }

    let deps = doc
        .entry("dependencies")
        .or_insert(toml_edit::table())
        .as_table_like_mut()
        .ok_or_else(|| conflict(CARGO_TOML, "`dependencies` is not a table"))?;
    match deps.get_mut(CRATE) {
        None => {
            let mut dep = InlineTable::new();
            dep.insert("version", CRATE_VERSION.into());
            dep.insert("features", Array::from_iter([FEATURE]).into());
            deps.insert(CRATE, value(dep));
            added.push(format!("dependency {CRATE} {CRATE_VERSION} with feature \"{FEATURE}\""));
        }
        Some(item) => {
            if let Some(version) = item.as_str().map(str::to_owned) {
                let mut dep = InlineTable::new();
                dep.insert("version", version.into());
                *item = value(dep);
            }
            let dep = item
                .as_table_like_mut()
                .ok_or_else(|| conflict(CARGO_TOML, format!("dependency {CRATE} is neither a version nor a table")))?;
            let features = dep
                .entry("features")
                .or_insert(value(Array::new()))
                .as_array_mut()
                .ok_or_else(|| conflict(CARGO_TOML, format!("dependency {CRATE}: `features` is not an array")))?;
            if !features.iter().any(|f| f.as_str() == Some(FEATURE)) {
                features.push(FEATURE);
                added.push(format!("feature \"{FEATURE}\" of dependency {CRATE}"));
            }
        }
    }
    let summary =
        if before.is_none() { format!("package of {FUNCTION}: {}", added.join(", ")) } else { added.join(", ") };
    plan.set(CARGO_TOML, before, doc.to_string(), summary)
}

/// A new root `Cargo.toml`: a package named after the site's directory,
/// whose release builds (Vercel's: `cargo build --release`) are optimised
/// across crates, as tokenrelay's own: the relay runs about 7% fewer
/// instructions per request, and its binary is a third smaller.
fn starter_manifest(dir: &std::path::Path) -> String {
    let stem = dir.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    let name: String = stem.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let name = name.trim_matches('-');
    let name =
        if name.starts_with(|c: char| c.is_ascii_alphabetic()) { format!("{name}-api") } else { "site-api".into() };
    format!(
        "# The site's Vercel functions (npx tokenrelay init): Vercel's Rust builder\n\
         # (@vercel/rust) builds each api/<name>.rs declared as a [[bin]] here.\n\
         [package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
         # Release builds optimised across crates: a faster, smaller relay for a longer build.\n\
         [profile.release]\nlto = \"fat\"\ncodegen-units = 1\n"
    )
}

fn plan_vercel_json(plan: &mut Plan) -> Result<(), Error> {
    let before = plan.read(VERCEL_JSON)?;
    let text =
        before.clone().unwrap_or_else(|| "{\n  \"$schema\": \"https://openapi.vercel.sh/vercel.json\"\n}\n".into());
    let root = CstRootNode::parse(&text, &ParseOptions::default())
        .map_err(|e| failed(VERCEL_JSON, format!("is not valid JSON: {e}")))?;
    let config = root.object_value().ok_or_else(|| conflict(VERCEL_JSON, "is not a JSON object"))?;
    // https://vercel.com/docs/project-configuration#legacy: `routes` cannot be
    // combined with `rewrites`, and `builds` turns off the detection of api/.
    for legacy in ["routes", "builds"] {
        if config.get(legacy).is_some() {
            return Err(conflict(
                VERCEL_JSON,
                format!(
                    "uses the legacy `{legacy}`, which cannot be combined with the rewrite and function tokenrelay adds"
                ),
            ));
        }
    }
    let mut added = Vec::new();
    if !has_rewrite(&config)? {
        let rewrites = config
            .array_value_or_create("rewrites")
            .ok_or_else(|| conflict(VERCEL_JSON, "`rewrites` is not an array"))?;
        // First, so that a catch-all rewrite of the user's (`/(.*)`) cannot shadow it.
        rewrites.insert(0, object([("source", REWRITE_SOURCE), ("destination", MOUNT)]));
        added.push(format!("rewrite {REWRITE_SOURCE} → {MOUNT} (first)"));
    }
    let functions = config
        .object_value_or_create("functions")
        .ok_or_else(|| conflict(VERCEL_JSON, "`functions` is not an object"))?;
    match functions.get(FUNCTION) {
        None => {
            functions.append(FUNCTION, object([("includeFiles", DEFAULT_CONFIG_FILE)]));
            added.push(format!("functions[{FUNCTION:?}].includeFiles = {DEFAULT_CONFIG_FILE:?}"));
        }
        Some(prop) => {
            let function = prop
                .object_value()
                .ok_or_else(|| conflict(VERCEL_JSON, format!("functions[{FUNCTION:?}] is not an object")))?;
            match function.get("includeFiles").and_then(|p| p.value()).and_then(|v| v.to_serde_value()) {
                None => {
                    function.append("includeFiles", DEFAULT_CONFIG_FILE.into());
                    added.push(format!("functions[{FUNCTION:?}].includeFiles = {DEFAULT_CONFIG_FILE:?}"));
                }
                Some(v) if v.as_str() == Some(DEFAULT_CONFIG_FILE) => {}
                Some(v) => {
                    return Err(conflict(
                        VERCEL_JSON,
                        format!(
                            "functions[{FUNCTION:?}].includeFiles is {v}; the relay needs {DEFAULT_CONFIG_FILE:?} beside it"
                        ),
                    ));
                }
            }
        }
    }
    plan.set(VERCEL_JSON, before, root.to_string(), added.join(", "))
}

/// Whether the rewrite to the relay is there; an error when another rule
/// already claims the mount.
fn has_rewrite(config: &CstObject) -> Result<bool, Error> {
    let Some(prop) = config.get("rewrites") else { return Ok(false) };
    let rewrites = prop.array_value().ok_or_else(|| conflict(VERCEL_JSON, "`rewrites` is not an array"))?;
    let mut found = false;
    for rule in rewrites.elements().iter().filter_map(CstNode::to_serde_value) {
        let source = rule.get("source").and_then(|s| s.as_str()).unwrap_or_default();
        if !claims_mount(source) {
            continue;
        }
        let destination = rule.get("destination").and_then(|s| s.as_str()).unwrap_or_default();
        if source == REWRITE_SOURCE && destination == MOUNT {
            found = true;
        } else {
            return Err(conflict(
                VERCEL_JSON,
                format!(
                    "the rewrite {source:?} → {destination:?} already claims {MOUNT}; the relay needs {REWRITE_SOURCE:?} → {MOUNT:?}"
                ),
            ));
        }
    }
    Ok(found)
}

/// A JSON object of string values, in this order.
fn object<const N: usize>(pairs: [(&str, &str); N]) -> CstInputValue {
    CstInputValue::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v.into())).collect())
}
