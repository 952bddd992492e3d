//! Netlify: one `[[plugins]]` entry in `netlify.toml`. The build plugin
//! (`netlify-plugin-tokenrelay`) prefetches tokens for the build, places the
//! prebuilt relay function with the site's `tokenrelay.toml`, and adds the
//! `/api/relay/*` route itself, so the site needs no Rust and no redirect.

use tokenrelay::DEFAULT_CONFIG_FILE;
use tokenrelay::relay::MOUNT;
use toml_edit::{ArrayOfTables, DocumentMut, Item, Table, value};

use super::{Plan, conflict, failed};
use crate::Error;
use crate::claims_mount;

const FILE: &str = "netlify.toml";
/// The build plugin's npm package.
pub(crate) const PLUGIN: &str = "netlify-plugin-tokenrelay";
/// The plugin's input that adds the prebuilt relay function.
const RELAY_FUNCTION: &str = "relayFunction";
const PLUGIN_COMMENT: &str = "# tokenrelay: prefetches API tokens for the build, adds the /api/relay/* function\n\
                              # and its route, and fails the build if its output holds a secret.\n";

/// Who serves the relay on a Netlify site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Relay {
    /// The plugin's prebuilt function.
    Prebuilt,
    /// The site's framework (its adapter bundles the route).
    Framework,
    /// The site's own Netlify Function `relay` over `tokenrelay/fetch`: its
    /// bundle must carry the config and the addon, which Netlify's tracer
    /// does not find (the loader requires the platform package through
    /// `createRequire`).
    Function,
}

/// What the `relay` function's bundle must include besides what is traced.
const FUNCTION_FILES: [&str; 3] = [
    DEFAULT_CONFIG_FILE,
    "node_modules/tokenrelay-linux-x64-gnu/*.node",
    "node_modules/tokenrelay-linux-x64-gnu/package.json",
];

/// Plans the plugin entry (and for [`Relay::Function`], the function's
/// `included_files`); returns the steps left to the user. Unless the relay is
/// [`Relay::Prebuilt`], the plugin prefetches and scans but adds no function.
pub(crate) fn plan(plan: &mut Plan, relay: Relay) -> Result<Vec<String>, Error> {
    let relay_function = relay == Relay::Prebuilt;
    let before = plan.read(FILE)?;
    let mut doc: DocumentMut =
        before.as_deref().unwrap_or_default().parse().map_err(|e| failed(FILE, format!("is not valid TOML: {e}")))?;
    for rule in array_of_tables(&doc, "redirects")?.iter().flat_map(|t| t.iter()) {
        if let Some(from) = rule.get("from").and_then(Item::as_str)
            && claims_mount(from)
        {
            return Err(conflict(
                FILE,
                format!(
                    "[[redirects]] from = {from:?} already routes {MOUNT}/*, which {PLUGIN} routes to the relay \
                     function itself: remove that rule, or keep your own setup and skip `init`"
                ),
            ));
        }
    }
    let plugin = array_of_tables(&doc, "plugins")?
        .iter()
        .flat_map(|t| t.iter())
        .find(|p| p.get("package").and_then(Item::as_str) == Some(PLUGIN));
    let mut steps = Vec::new();
    let mut added = Vec::new();
    if let Some(plugin) = plugin {
        let adds_function = plugin.get("inputs").and_then(|i| i.get(RELAY_FUNCTION)?.as_bool()) != Some(false);
        if !relay_function && adds_function {
            steps.push(format!(
                "set {RELAY_FUNCTION} = false in {PLUGIN}'s [plugins.inputs]: the framework serves {MOUNT}/*"
            ));
        }
    } else {
        let mut entry = Table::new();
        entry["package"] = value(PLUGIN);
        if !relay_function {
            let mut inputs = Table::new();
            inputs[RELAY_FUNCTION] = value(false);
            entry["inputs"] = Item::Table(inputs);
        }
        let gap = if before.as_deref().is_some_and(|t| !t.trim().is_empty()) { "\n" } else { "" };
        entry.decor_mut().set_prefix(format!("{gap}{PLUGIN_COMMENT}"));
        if let Some(plugins) =
            doc.entry("plugins").or_insert(Item::ArrayOfTables(ArrayOfTables::new())).as_array_of_tables_mut()
        {
            plugins.push(entry);
        }
        added.push(format!("[[plugins]] package = \"{PLUGIN}\""));
    }
    if relay == Relay::Function && include_function_files(&mut doc)? {
        added.push("[functions.relay] included_files: tokenrelay.toml and the addon".to_owned());
    }
    if !added.is_empty() {
        // An untouched document renders exactly as read; new entries have no
        // position, so they are rendered after everything the user wrote.
        plan.set(FILE, before, doc.to_string(), added.join(", "))?;
    }
    steps.extend(
        super::missing_packages(plan, &[PLUGIN])?
            .into_iter()
            .map(|p| format!("install the plugin: npm install --save-dev {p}")),
    );
    Ok(steps)
}

/// Adds [`FUNCTION_FILES`] to `[functions.relay] included_files`; whether any was missing.
fn include_function_files(doc: &mut DocumentMut) -> Result<bool, Error> {
    let not_a_table = |key: &str| conflict(FILE, format!("`{key}` is not a table, so init cannot add to it"));
    let mut implicit = Table::new();
    implicit.set_implicit(true);
    let functions = doc.entry("functions").or_insert(Item::Table(implicit.clone()));
    let functions = functions.as_table_like_mut().ok_or_else(|| not_a_table("functions"))?;
    let relay = functions.entry("relay").or_insert(Item::Table(Table::new()));
    let relay = relay.as_table_like_mut().ok_or_else(|| not_a_table("functions.relay"))?;
    let files = relay.entry("included_files").or_insert(value(toml_edit::Array::new()));
    let files = files.as_array_mut().ok_or_else(|| not_a_table("functions.relay.included_files"))?;
    let missing: Vec<&str> =
        FUNCTION_FILES.into_iter().filter(|f| !files.iter().any(|v| v.as_str() == Some(f))).collect();
    for file in &missing {
        files.push(*file);
    }
    Ok(!missing.is_empty())
}

/// The array of tables `key` (`[[key]]`), if any.
fn array_of_tables<'a>(doc: &'a DocumentMut, key: &str) -> Result<Option<&'a ArrayOfTables>, Error> {
    match doc.get(key) {
        None => Ok(None),
        Some(item) => item.as_array_of_tables().map(Some).ok_or_else(|| {
            conflict(FILE, format!("`{key}` is not written as [[{key}]] tables, so init cannot add to it"))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sites_relay_function_gets_the_addon_in_its_included_files_once() {
        let dir = tempfile::tempdir().unwrap();
        let own = "[functions]\ndirectory = \"fns\"\n\n[functions.relay]\nincluded_files = [\"data/**\"]\n";
        std::fs::write(dir.path().join(FILE), own).unwrap();
        let mut first = Plan::new(dir.path().to_owned());
        plan(&mut first, Relay::Function).unwrap();
        first.write().unwrap();
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert!(text.starts_with("[functions]\ndirectory = \"fns\"\n"), "{text}");
        let config: toml_edit::DocumentMut = text.parse().unwrap();
        let files: Vec<&str> = config["functions"]["relay"]["included_files"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_eq!(files, ["data/**", FUNCTION_FILES[0], FUNCTION_FILES[1], FUNCTION_FILES[2]]);
        let plugin = &config["plugins"][0];
        assert_eq!(plugin["inputs"][RELAY_FUNCTION].as_bool(), Some(false), "{text}");

        let mut second = Plan::new(dir.path().to_owned());
        plan(&mut second, Relay::Function).unwrap();
        assert!(second.changes().is_empty(), "{:?}", second.changes());
    }
}
