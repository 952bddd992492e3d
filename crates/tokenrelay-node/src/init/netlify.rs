//! Netlify: one `[[plugins]]` entry in `netlify.toml`. The build plugin
//! (`netlify-plugin-tokenrelay`) prefetches tokens for the build, places the
//! prebuilt relay function with the site's `tokenrelay.toml`, and adds the
//! `/api/relay/*` route itself, so the site needs no Rust and no redirect.

use tokenrelay::relay::MOUNT;
use toml_edit::{ArrayOfTables, DocumentMut, Item, Table, value};

use super::{Plan, claims_mount, conflict, failed};
use crate::error::AddonError;

const FILE: &str = "netlify.toml";
/// The build plugin's npm package.
pub(crate) const PLUGIN: &str = "netlify-plugin-tokenrelay";
/// The plugin's input that adds the prebuilt relay function.
const RELAY_FUNCTION: &str = "relayFunction";
const PLUGIN_COMMENT: &str = "# tokenrelay: prefetches API tokens for the build, adds the /api/relay/* function\n\
                              # and its route, and fails the build if its output holds a secret.\n";

/// Plans the plugin entry; returns the steps left to the user. Without
/// `relay_function` (the site's framework serves the relay), the plugin
/// prefetches and scans but adds no function.
pub(crate) fn plan(plan: &mut Plan, relay_function: bool) -> Result<Vec<String>, AddonError> {
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
        // An untouched document renders exactly as read; the new entry has no
        // position, so it is rendered after everything the user wrote.
        let after = doc.to_string();
        plan.set(FILE, before, after, format!("[[plugins]] package = \"{PLUGIN}\""))?;
    }
    steps.extend(
        super::missing_packages(plan, &[PLUGIN])?
            .into_iter()
            .map(|p| format!("install the plugin: npm install --save-dev {p}")),
    );
    Ok(steps)
}

/// The array of tables `key` (`[[key]]`), if any.
fn array_of_tables<'a>(doc: &'a DocumentMut, key: &str) -> Result<Option<&'a ArrayOfTables>, AddonError> {
    match doc.get(key) {
        None => Ok(None),
        Some(item) => item.as_array_of_tables().map(Some).ok_or_else(|| {
            conflict(FILE, format!("`{key}` is not written as [[{key}]] tables, so init cannot add to it"))
        }),
    }
}
