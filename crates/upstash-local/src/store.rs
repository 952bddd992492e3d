//! The connection to the real Redis behind the REST facade.
//!
//! One multiplexed connection is shared by all requests. It is opened lazily,
//! and dropped as soon as it fails at the I/O level so that the next request
//! reconnects: the server keeps answering (with 503) while Redis is down and
//! recovers by itself once Redis is back.

use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, RedisError, Value};
use tokio::sync::Mutex;

use crate::command::{Command, ScriptFlags};
use crate::reply::{Outcome, outcome, redis_error_message};

/// Why a command or a batch got no reply from Redis.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis could not be reached, or the connection broke or timed out.
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    /// Redis refused the whole batch (e.g. a transaction that failed to queue).
    #[error("{0}")]
    Rejected(String),
}

/// Timeouts for talking to Redis.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// How long to wait for a TCP connection to Redis.
    pub connect: Duration,
    /// How long to wait for Redis to answer a command or batch.
    pub response: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self { connect: Duration::from_secs(1), response: Duration::from_secs(10) }
    }
}

/// A lazily (re)connecting handle to one Redis server.
pub struct Store {
    client: redis::Client,
    config: AsyncConnectionConfig,
    /// The live connection, tagged with a generation so that a failure seen on an
    /// old connection does not throw away a newer one.
    current: Mutex<Option<(u64, MultiplexedConnection)>>,
    generation: std::sync::atomic::AtomicU64,
    script_flags: ScriptFlags,
}

impl Store {
    /// Validates `redis_url` without connecting.
    pub fn new(redis_url: &str, timeouts: Timeouts, script_flags: ScriptFlags) -> Result<Self, RedisError> {
        let client = redis::Client::open(redis_url)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(timeouts.connect)
            .set_response_timeout(timeouts.response);
        Ok(Self { client, config, current: Mutex::new(None), generation: Default::default(), script_flags })
    }

    /// Runs one command.
    pub async fn run(&self, command: &Command) -> Result<Outcome, StoreError> {
        let (generation, mut conn) = self.connection().await?;
        match conn.req_packed_command(&command.to_redis(self.script_flags)).await {
            Ok(value) => Ok(outcome(value)),
            Err(err) => self.failed(generation, err).await.map(Err),
        }
    }

    /// Runs commands in one round trip; with `atomic` they are wrapped in MULTI/EXEC.
    pub async fn run_batch(&self, commands: &[Command], atomic: bool) -> Result<Vec<Outcome>, StoreError> {
        let mut pipe = redis::pipe();
        if atomic {
            pipe.atomic();
        }
        for command in commands {
            pipe.add_command(command.to_redis(self.script_flags));
        }
        let (generation, mut conn) = self.connection().await?;
        // A transaction's replies are MULTI's OK, one QUEUED per command, then EXEC's array.
        let (offset, count) = if atomic { (commands.len() + 1, 1) } else { (0, commands.len()) };
        let replies = match conn.req_packed_commands(&pipe, offset, count).await {
            Ok(replies) => replies,
            Err(err) => {
                let message = self.failed(generation, err).await?;
                return Err(StoreError::Rejected(message));
            }
        };
        if !atomic {
            return Ok(replies.into_iter().map(outcome).collect());
        }
        match replies.into_iter().next() {
            Some(Value::Array(items)) if items.len() == commands.len() => Ok(items.into_iter().map(outcome).collect()),
            Some(Value::ServerError(err)) => Err(StoreError::Rejected(redis_error_message(&err.into()))),
            other => Err(StoreError::Rejected(format!("unexpected reply to EXEC: {other:?}"))),
        }
    }

    /// Opens a connection now, so that startup can report a bad Redis early.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let (generation, mut conn) = self.connection().await?;
        match conn.req_packed_command(&redis::cmd("PING")).await {
            Ok(_) => Ok(()),
            Err(err) => {
                let message = self.failed(generation, err).await?;
                Err(StoreError::Rejected(message))
            }
        }
    }

    async fn connection(&self) -> Result<(u64, MultiplexedConnection), StoreError> {
        let mut current = self.current.lock().await;
        if let Some((generation, conn)) = current.as_ref() {
            return Ok((*generation, conn.clone()));
        }
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let generation = self.generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *current = Some((generation, conn.clone()));
        Ok((generation, conn))
    }

    /// Sorts an error from Redis: a reply Redis gave (returned as its message), or a
    /// broken connection (dropped so the next request reconnects).
    async fn failed(&self, generation: u64, err: RedisError) -> Result<String, StoreError> {
        if !is_connection_failure(&err) && err.code().is_some() {
            return Ok(redis_error_message(&err));
        }
        let mut current = self.current.lock().await;
        if matches!(current.as_ref(), Some((g, _)) if *g == generation) {
            *current = None;
        }
        tracing::warn!(error = %err, "redis connection failed; will reconnect");
        Err(StoreError::Unavailable(err.to_string()))
    }
}

fn is_connection_failure(err: &RedisError) -> bool {
    err.is_io_error() || err.is_unrecoverable_error()
}
