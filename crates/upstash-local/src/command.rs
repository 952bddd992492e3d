//! Parsing REST request bodies into Redis commands.

use serde_json::Value as Json;

/// One Redis command: its name followed by its arguments, each as raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command(pub Vec<Vec<u8>>);

impl Command {
    /// The command name as sent by the client (e.g. `set`).
    pub fn name(&self) -> String {
        String::from_utf8_lossy(&self.0[0]).into_owned()
    }

    /// Builds the `redis` crate command for this request, its script's
    /// Upstash-only flags dropped or kept as `flags` says.
    pub fn to_redis(&self, flags: ScriptFlags) -> redis::Cmd {
        let mut cmd = redis::cmd(&self.name());
        let strips = flags == ScriptFlags::Strip
            && ["EVAL", "EVAL_RO"].iter().any(|n| self.0[0].eq_ignore_ascii_case(n.as_bytes()));
        for (i, arg) in self.0[1..].iter().enumerate() {
            match (strips && i == 0).then(|| without_upstash_flags(arg)).flatten() {
                Some(script) => cmd.arg(script),
                None => cmd.arg(arg.as_slice()),
            };
        }
        cmd
    }
}

/// What becomes of Upstash's own script flags on their way to Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScriptFlags {
    /// Dropped, so that Redis runs the script as Upstash would.
    #[default]
    Strip,
    /// Forwarded unchanged, as serverless-redis-http (SRH) does: Redis
    /// refuses the script, so clients see what they would through SRH.
    Forward,
}

/// Upstash's own script flag: `#!lua flags=allow-key-locking` lets a script
/// lock only its keys instead of the whole database. Redis refuses flags it
/// does not know, so the stand-in drops it (locking is Upstash's concern),
/// and the shebang with it when no other flag remains. `None`: unchanged.
fn without_upstash_flags(script: &[u8]) -> Option<Vec<u8>> {
    const FLAG: &str = "allow-key-locking";
    let text = std::str::from_utf8(script).ok()?;
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    let flags = first.strip_prefix("#!lua")?.trim().strip_prefix("flags=")?;
    let kept: Vec<&str> = flags.split(',').map(str::trim).filter(|f| *f != FLAG).collect();
    if kept.len() == flags.split(',').count() {
        return None;
    }
    let shebang = if kept.is_empty() { String::new() } else { format!("#!lua flags={}", kept.join(",")) };
    Some(format!("{shebang}\n{rest}").into_bytes())
}

/// Why a request body could not be turned into commands.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    /// The body is not valid JSON.
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    /// The body is JSON but not a command array.
    #[error("command must be a non-empty JSON array of strings and numbers, e.g. [\"SET\", \"key\", \"value\"]")]
    NotACommand,
    /// A command element is not a string, number or boolean.
    #[error("command argument {index} must be a string or a number, got {kind}")]
    BadArgument {
        /// Zero-based position of the argument in its command.
        index: usize,
        /// JSON type that was found instead.
        kind: &'static str,
    },
    /// A pipeline body is not an array of command arrays.
    #[error(
        "pipeline body must be a non-empty JSON array of command arrays, e.g. [[\"SET\", \"k\", \"v\"], [\"GET\", \"k\"]]"
    )]
    NotAPipeline,
    /// The command would change or block the connection that all requests share.
    #[error(
        "ERR command '{0}' is not supported by upstash-local: it would change or block the shared Redis connection"
    )]
    Unsupported(String),
    /// One entry of a pipeline is not a valid command.
    #[error("pipeline entry {index}: {source}")]
    BadEntry {
        /// Zero-based position of the entry in the pipeline.
        index: usize,
        /// What is wrong with it.
        source: Box<BodyError>,
    },
}

/// Parses a `POST /` body: a JSON array such as `["SET", "k", "v", "EX", 10]`.
pub fn parse_single(body: &[u8]) -> Result<Command, BodyError> {
    command_from_json(parse_json(body)?)
}

/// Parses a `POST /pipeline` or `POST /multi-exec` body: an array of command arrays.
pub fn parse_pipeline(body: &[u8]) -> Result<Vec<Command>, BodyError> {
    let Json::Array(entries) = parse_json(body)? else {
        return Err(BodyError::NotAPipeline);
    };
    if entries.is_empty() {
        return Err(BodyError::NotAPipeline);
    }
    entries
        .into_iter()
        .enumerate()
        .map(|(index, entry)| {
            if !entry.is_array() {
                return Err(BodyError::NotAPipeline);
            }
            command_from_json(entry).map_err(|source| BodyError::BadEntry { index, source: Box::new(source) })
        })
        .collect()
}

fn parse_json(body: &[u8]) -> Result<Json, BodyError> {
    serde_json::from_slice(body).map_err(|e| BodyError::InvalidJson(e.to_string()))
}

fn command_from_json(value: Json) -> Result<Command, BodyError> {
    let Json::Array(items) = value else {
        return Err(BodyError::NotACommand);
    };
    if items.is_empty() {
        return Err(BodyError::NotACommand);
    }
    let args = items
        .into_iter()
        .enumerate()
        .map(|(index, item)| argument_bytes(index, item))
        .collect::<Result<Vec<_>, _>>()?;
    if args[0].is_empty() {
        return Err(BodyError::NotACommand);
    }
    let command = Command(args);
    if !command.is_shareable() {
        return Err(BodyError::Unsupported(command.name().to_lowercase()));
    }
    Ok(command)
}

/// Commands that change connection state (transactions, database, subscriptions,
/// protocol) or block the connection until data arrives. All requests share one
/// multiplexed connection, so these are refused; MULTI/EXEC is available as
/// `POST /multi-exec`.
const UNSHAREABLE: &[&str] = &[
    "AUTH",
    "BLMOVE",
    "BLMPOP",
    "BLPOP",
    "BRPOP",
    "BRPOPLPUSH",
    "BZMPOP",
    "BZPOPMAX",
    "BZPOPMIN",
    "CLIENT",
    "DISCARD",
    "EXEC",
    "HELLO",
    "MONITOR",
    "MULTI",
    "PSUBSCRIBE",
    "PSYNC",
    "PUNSUBSCRIBE",
    "QUIT",
    "READONLY",
    "READWRITE",
    "RESET",
    "SELECT",
    "SSUBSCRIBE",
    "SUBSCRIBE",
    "SUNSUBSCRIBE",
    "SYNC",
    "UNSUBSCRIBE",
    "UNWATCH",
    "WAIT",
    "WAITAOF",
    "WATCH",
];

impl Command {
    fn is_shareable(&self) -> bool {
        let name = self.name().to_uppercase();
        if UNSHAREABLE.contains(&name.as_str()) {
            return false;
        }
        // XREAD/XREADGROUP only block with the BLOCK option.
        let blocks =
            (name == "XREAD" || name == "XREADGROUP") && self.0[1..].iter().any(|a| a.eq_ignore_ascii_case(b"BLOCK"));
        !blocks
    }
}

/// Strings are sent as-is, numbers as their decimal text, booleans as `true`/`false`
/// (the official JS client passes booleans through unserialized).
fn argument_bytes(index: usize, item: Json) -> Result<Vec<u8>, BodyError> {
    match item {
        Json::String(s) => Ok(s.into_bytes()),
        Json::Number(n) => Ok(n.to_string().into_bytes()),
        Json::Bool(b) => Ok(b.to_string().into_bytes()),
        Json::Null => Err(BodyError::BadArgument { index, kind: "null" }),
        Json::Array(_) => Err(BodyError::BadArgument { index, kind: "an array" }),
        Json::Object(_) => Err(BodyError::BadArgument { index, kind: "an object" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(cmd: &Command) -> Vec<String> {
        cmd.0.iter().map(|a| String::from_utf8(a.clone()).unwrap()).collect()
    }

    #[test]
    fn upstash_key_locking_flag_is_dropped_for_redis() {
        let script = |s: &str| Command(vec![b"EVAL".to_vec(), s.as_bytes().to_vec(), b"0".to_vec()]);
        let sent = |c: Command| sent_as(c, ScriptFlags::Strip);
        assert_eq!(sent(script("#!lua flags=allow-key-locking\nreturn 1")), "\nreturn 1");
        assert_eq!(
            sent(script("#!lua flags=no-writes,allow-key-locking\nreturn 1")),
            "#!lua flags=no-writes\nreturn 1"
        );
        assert_eq!(sent(script("return 1")), "return 1", "scripts without the flag pass unchanged");
    }

    #[test]
    fn srh_mode_forwards_the_flag_unchanged() {
        let flagged = "#!lua flags=allow-key-locking\nreturn 1";
        let command = Command(vec![b"EVAL".to_vec(), flagged.as_bytes().to_vec(), b"0".to_vec()]);
        assert_eq!(sent_as(command, ScriptFlags::Forward), flagged);
    }

    /// The script (first argument) of `command` as it goes to Redis.
    fn sent_as(command: Command, flags: ScriptFlags) -> String {
        String::from_utf8(
            command
                .to_redis(flags)
                .args_iter()
                .nth(1)
                .map(|a| match a {
                    redis::Arg::Simple(b) => b.to_vec(),
                    redis::Arg::Cursor => Vec::new(),
                })
                .unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn numbers_and_booleans_are_forwarded_as_text() {
        let cmd = parse_single(br#"["SET", "k", 1.5, "EX", 10, true]"#).unwrap();
        assert_eq!(args(&cmd), ["SET", "k", "1.5", "EX", "10", "true"]);
    }

    #[test]
    fn unicode_strings_are_forwarded_as_utf8_bytes() {
        let cmd = parse_single(r#"["set","k","h\u00e9llo \u2713"]"#.as_bytes()).unwrap();
        assert_eq!(args(&cmd)[2], "héllo ✓");
    }

    #[test]
    fn rejects_non_json_bodies() {
        assert!(matches!(parse_single(b"SET k v"), Err(BodyError::InvalidJson(_))));
    }

    #[test]
    fn rejects_empty_and_non_array_commands() {
        assert_eq!(parse_single(b"[]"), Err(BodyError::NotACommand));
        assert_eq!(parse_single(br#"{"cmd":"get"}"#), Err(BodyError::NotACommand));
        assert_eq!(parse_single(br#"["", "k"]"#), Err(BodyError::NotACommand));
    }

    #[test]
    fn rejects_nested_and_null_arguments() {
        assert_eq!(
            parse_single(br#"["SET", "k", {"a": 1}]"#),
            Err(BodyError::BadArgument { index: 2, kind: "an object" })
        );
        assert_eq!(parse_single(br#"["GET", null]"#), Err(BodyError::BadArgument { index: 1, kind: "null" }));
    }

    #[test]
    fn refuses_commands_that_would_change_or_block_the_shared_connection() {
        for body in [
            r#"["multi"]"#,
            r#"["SELECT", 1]"#,
            r#"["BLPOP", "q", 0]"#,
            r#"["subscribe", "ch"]"#,
            r#"["XREAD", "block", 0, "STREAMS", "s", "$"]"#,
        ] {
            assert!(matches!(parse_single(body.as_bytes()), Err(BodyError::Unsupported(_))), "{body}");
        }
        assert!(parse_single(br#"["XREAD", "COUNT", 1, "STREAMS", "s", "0"]"#).is_ok());
    }

    #[test]
    fn pipeline_parses_each_entry() {
        let cmds = parse_pipeline(br#"[["SET","a",1],["GET","a"]]"#).unwrap();
        assert_eq!(cmds.len(), 2);
        assert_eq!(args(&cmds[1]), ["GET", "a"]);
    }

    #[test]
    fn pipeline_rejects_flat_arrays_and_empty_pipelines() {
        assert_eq!(parse_pipeline(br#"["GET","a"]"#), Err(BodyError::NotAPipeline));
        assert_eq!(parse_pipeline(b"[]"), Err(BodyError::NotAPipeline));
    }

    #[test]
    fn pipeline_error_names_the_bad_entry() {
        let err = parse_pipeline(br#"[["GET","a"],[]]"#).unwrap_err();
        assert_eq!(err.to_string(), format!("pipeline entry 1: {}", BodyError::NotACommand));
    }
}
