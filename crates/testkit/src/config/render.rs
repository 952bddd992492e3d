//! From the builder's types to TOML: absent options are left out, so the
//! relay's documented defaults apply, exactly as in a hand-written file; keys
//! keep the order they were set in, and small tables are written inline.

use std::time::Duration;

use toml_edit::{Array, DocumentMut, InlineTable, Item, Value};

/// A TOML table under construction.
#[derive(Default)]
pub(super) struct Table(InlineTable);

impl Table {
    /// Sets `key` to `value`.
    pub(super) fn set(&mut self, key: &str, value: impl Into<Value>) -> &mut Self {
        self.0.insert(key, value.into());
        self
    }

    /// Sets `key` when there is a value.
    pub(super) fn opt<T: Into<Value>>(&mut self, key: &str, value: Option<T>) -> &mut Self {
        if let Some(value) = value {
            self.set(key, value);
        }
        self
    }

    /// Sets `key` to a duration as the relay writes it (`"1h"`, `"300ms"`).
    pub(super) fn duration(&mut self, key: &str, value: Option<Duration>) -> &mut Self {
        self.opt(key, value.map(duration))
    }

    /// Sets `key` when `on` (a flag whose default is off).
    pub(super) fn flag(&mut self, key: &str, on: bool) -> &mut Self {
        if on {
            self.set(key, true);
        }
        self
    }

    /// Sets `key` to `table` unless it is empty.
    pub(super) fn table(&mut self, key: &str, table: Table) -> &mut Self {
        if !table.0.is_empty() {
            self.set(key, table);
        }
        self
    }

    /// `[section]` headers for the top-level tables and for `sections` below
    /// each of them (`upstreams.<name>`), and for `relay` below those.
    pub(super) fn into_document(self) -> String {
        let mut doc = DocumentMut::new();
        for (key, value) in self.0 {
            let Value::InlineTable(table) = value else { continue };
            let mut table = table.into_table();
            if key.as_str() == "upstreams" {
                table.set_implicit(true);
                for (_, upstream) in table.iter_mut() {
                    if let Some(inline) = upstream.as_inline_table_mut() {
                        let mut section = std::mem::take(inline).into_table();
                        if let Some(relay) = section.get_mut("relay").and_then(Item::as_inline_table_mut) {
                            let relay = std::mem::take(relay).into_table();
                            section.insert("relay", Item::Table(relay));
                        }
                        *upstream = Item::Table(section);
                    }
                }
            }
            doc.insert(&key, Item::Table(table));
        }
        doc.to_string()
    }
}

impl From<Table> for Value {
    fn from(table: Table) -> Value {
        Value::InlineTable(table.0)
    }
}

/// `d` as humantime writes it, which the relay's durations parse.
pub(super) fn duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A list of strings.
pub(super) fn strings<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Array {
    items.into_iter().map(Into::into).collect::<Vec<String>>().into_iter().collect()
}

/// `items`, one a line (a route list).
pub(super) fn lines(items: impl IntoIterator<Item = Value>) -> Array {
    let mut array: Array = items.into_iter().collect();
    for item in array.iter_mut() {
        item.decor_mut().set_prefix("\n  ");
    }
    array.set_trailing_comma(true);
    array.set_trailing("\n");
    array
}
