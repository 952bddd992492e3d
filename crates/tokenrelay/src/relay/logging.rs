//! The log setup every shell uses (feature `logging`).

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::registry::LookupSpan;

/// JSON logs, one object per line, on stderr; the level comes from
/// `RUST_LOG` (default `info`). stderr, because stdout belongs to the
/// platform: `vercel_runtime` announces its port there, and Netlify's local
/// functions proxy reads the function's answer from its own.
pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // A second call (tests, embedding) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .event_format(JsonLine)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// One JSON object per event, fields flattened beside `timestamp`, `level`
/// and `target`: the shape of tracing-subscriber's `.json().flatten_event(true)`,
/// written straight to the line. That formatter collects every field into a
/// map of `serde_json::Value`s first; on the relay's one line per request it
/// was a sixth of the process's instructions (callgrind, bench/README.md).
struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        use fmt::Write as _;
        let meta = event.metadata();
        // The whole line in one buffer, written once; only the timestamp goes
        // through the formatting machinery (humantime's `Display`).
        let mut line = JsonFields { out: String::with_capacity(LINE_CAPACITY), result: Ok(()) };
        let now = humantime::format_rfc3339_micros(std::time::SystemTime::now());
        write!(line.out, "{{\"timestamp\":\"{now}\"")?;
        line.push(",\"level\":\"");
        line.push(meta.level().as_str());
        line.push("\"");
        event.record(&mut line);
        line.result?;
        line.push(",\"target\":");
        line.string(meta.target());
        line.push("}\n");
        writer.write_str(&line.out)
    }
}

/// Room for a relay request's whole line (about 330 bytes), so that it never grows.
const LINE_CAPACITY: usize = 512;

/// Writes `,"name":value` for each field.
struct JsonFields {
    out: String,
    result: fmt::Result,
}

impl JsonFields {
    fn push(&mut self, s: &str) {
        self.out.push_str(s);
    }

    fn string(&mut self, s: &str) {
        // Most values (names, ids, codes, paths) need no escape (RFC 8259 §7
        // escapes only `"`, `\` and control characters): copied as they are,
        // without an allocation per field. Others go through serde_json,
        // which escapes exactly as JSON needs; writing to a String cannot fail.
        if !needs_escape(s) {
            self.out.push('"');
            self.out.push_str(s);
            self.out.push('"');
        } else if let Ok(quoted) = serde_json::to_string(s) {
            self.out.push_str(&quoted);
        }
    }

    fn name(&mut self, field: &Field) {
        self.push(",");
        self.string(field.name());
        self.push(":");
    }
}

impl Visit for JsonFields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.name(field);
        // As serde_json writes an f64: the shortest form that reads back, or `null`.
        if value.is_finite() {
            self.push(ryu::Buffer::new().format_finite(value));
        } else {
            self.push("null");
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.name(field);
        self.push(itoa::Buffer::new().format(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.name(field);
        self.push(itoa::Buffer::new().format(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.name(field);
        self.push(if value { "true" } else { "false" });
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.name(field);
        self.string(value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.name(field);
        self.string(&value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        use fmt::Write as _;
        self.name(field);
        // Written in place (the message, a `%method`), and moved out to be
        // escaped only when it needs it.
        let start = self.out.len() + 1;
        self.push("\"");
        self.result = self.result.and(write!(self.out, "{value:?}"));
        if needs_escape(&self.out[start..]) {
            let raw = self.out.split_off(start);
            self.out.truncate(start - 1);
            self.string(&raw);
        } else {
            self.push("\"");
        }
    }
}

/// Whether `s` holds a byte JSON escapes in a string. Every byte is looked
/// at, without stopping at the first: the loop then compiles to vector
/// compares (the strings of a log line are short, and mostly need no escape).
fn needs_escape(s: &str) -> bool {
    s.bytes().fold(false, |found, b| found | (b < 0x20) | (b == b'"') | (b == b'\\'))
}

/// The lines `f` logs, each parsed, as [`init_logging`] writes them.
#[cfg(test)]
pub(super) fn json_lines(f: impl FnOnce()) -> Vec<serde_json::Value> {
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt().event_format(JsonLine).with_writer(move || sink.clone()).finish();
    tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_json_object_per_event_with_flattened_fields() {
        let lines = json_lines(|| {
            let method = http::Method::GET;
            let quoted = "a\"b";
            tracing::info!(request_id = "r\"1", debugged = ?quoted, inf = f64::INFINITY, path = "/a\\b\n\u{1}é", %method, status = 200u16, ok = true, ms = 0.25, detail = None::<&str>, "relay request");
        });
        let [line] = lines.as_slice() else { panic!("one line: {lines:?}") };
        assert_eq!(line["message"], "relay request");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["request_id"], "r\"1");
        assert_eq!(line["path"], "/a\\b\n\u{1}é", "escaped as JSON needs");
        assert_eq!(line["method"], "GET");
        assert_eq!(line["status"], 200);
        assert_eq!(line["ok"], true);
        assert_eq!(line["ms"], 0.25);
        assert_eq!(line["debugged"], "\"a\\\"b\"", "a Debug value is escaped too");
        assert_eq!(line["inf"], serde_json::Value::Null);
        assert!(line.get("detail").is_none(), "an absent field is left out: {line}");
        assert_eq!(line["target"], module_path!());
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
    }
}
