//! A Lua script run by its SHA-1 (`EVALSHA`), loaded with `EVAL` the first time a
//! server does not know it (after a restart, or on a new server). The digest is
//! ring's: Redis names scripts by SHA-1, and keyward keeps one hash backend.

use redis::aio::ConnectionManager;
use redis::{Cmd, FromRedisValue, RedisResult, ToRedisArgs};

/// A script and its Redis name.
#[derive(Debug)]
pub(super) struct Script {
    source: &'static str,
    sha1: String,
}

/// One call of a script: its keys and arguments.
#[derive(Debug, Default)]
pub(super) struct Call {
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
}

impl Call {
    pub(super) fn key(&mut self, key: impl ToRedisArgs) -> &mut Self {
        self.keys.extend(key.to_redis_args());
        self
    }

    /// Adds the keys of `other` (its arguments are not taken).
    pub(super) fn merge_keys(&mut self, other: Self) -> &mut Self {
        self.keys.extend(other.keys);
        self
    }

    pub(super) fn arg(&mut self, arg: impl ToRedisArgs) -> &mut Self {
        self.args.extend(arg.to_redis_args());
        self
    }
}

impl Script {
    pub(super) fn new(source: &'static str) -> Self {
        let digest =
            ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, source.as_bytes());
        Self {
            source,
            sha1: keyward_venues::hex(digest.as_ref()),
        }
    }

    /// Runs `call`: by name, then by source if the server answers `NOSCRIPT`.
    pub(super) fn run<T: FromRedisValue>(
        &self,
        call: Call,
        mut manager: ConnectionManager,
    ) -> impl Future<Output = RedisResult<T>> + use<T> {
        let by_name = command("EVALSHA", &self.sha1, &call);
        let source = self.source;
        async move {
            match by_name.query_async(&mut manager).await {
                Err(error)
                    if error.kind()
                        == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    command("EVAL", source, &call)
                        .query_async(&mut manager)
                        .await
                }
                other => other,
            }
        }
    }

    /// The command that runs `call`: by name, or with the script's source.
    pub(super) fn command_for(&self, call: &Call, by_source: bool) -> Cmd {
        if by_source {
            command("EVAL", self.source, call)
        } else {
            command("EVALSHA", &self.sha1, call)
        }
    }
}

fn command(name: &str, script: &str, call: &Call) -> Cmd {
    let mut command = redis::cmd(name);
    command.arg(script).arg(call.keys.len());
    for key in &call.keys {
        command.arg(key.as_slice());
    }
    for arg in &call.args {
        command.arg(arg.as_slice());
    }
    command
}
