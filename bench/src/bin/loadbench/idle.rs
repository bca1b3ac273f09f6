//! Idle bots: many TLS connections to keyward, each sending one signed read and then
//! staying open with nothing to say, as bots polling rarely keep theirs. What keyward
//! holds for them is read from its resident memory while they are open.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward_tests::client::{BotClient, Connection};
use tokio::task::JoinSet;

/// Connections opened and held.
#[derive(Debug)]
pub(crate) struct Held {
    /// Open connections, each answered once with 2xx.
    pub(crate) connections: Vec<Connection>,
    /// Connections that could not be opened or were not answered 2xx.
    pub(crate) failed: usize,
    /// Time taken to open them all.
    pub(crate) elapsed: Duration,
}

/// Opens `count` connections to keyward at `addr` (trusting `ca`), `parallel` at a
/// time, sending `request` on each and reading its answer.
pub(crate) async fn open(
    addr: SocketAddr,
    ca: &Path,
    request: Vec<u8>,
    count: usize,
    parallel: usize,
) -> Held {
    let client = Arc::new(BotClient::new(addr, ca));
    let request = Arc::new(request);
    let started = Instant::now();
    let mut connections = Vec::with_capacity(count);
    let mut failed = 0;
    let mut tasks = JoinSet::new();
    let mut launched = 0;
    while launched < count || !tasks.is_empty() {
        while launched < count && tasks.len() < parallel {
            let (client, request) = (client.clone(), request.clone());
            tasks.spawn(async move {
                let mut connection = client.try_keep_alive().await.ok()?;
                let answer = connection.send(&request).await;
                ((200..300).contains(&answer.status) && !answer.closed).then_some(connection)
            });
            launched += 1;
        }
        match tasks.join_next().await {
            Some(Ok(Some(connection))) => connections.push(connection),
            Some(_) => failed += 1,
            None => {}
        }
    }
    Held {
        connections,
        failed,
        elapsed: started.elapsed(),
    }
}

/// WebSockets opened and held.
pub(crate) struct HeldStreams {
    /// Open WebSockets, each answered once.
    pub(crate) sockets: Vec<keyward_tests::ws_client::WsClient>,
    /// WebSockets that could not be opened or were not answered.
    pub(crate) failed: usize,
    /// Time taken to open them all.
    pub(crate) elapsed: Duration,
}

/// Opens `count` WebSockets to keyward's Binance spot path, `parallel` at a time,
/// each asking `session.status` once (which keyward answers itself: the memory
/// measured is keyward's for the bot's side alone). They are not bound to a bot: a
/// bot may hold at most eight, and binding adds only its name and token.
pub(crate) async fn open_streams(
    addr: SocketAddr,
    ca: &Path,
    count: usize,
    parallel: usize,
) -> HeldStreams {
    let ca = Arc::new(ca.to_path_buf());
    let status = Arc::new(serde_json::json!({"id": 1, "method": "session.status"}));
    let started = Instant::now();
    let mut sockets = Vec::with_capacity(count);
    let mut failed = 0;
    let mut tasks = JoinSet::new();
    let mut launched = 0;
    while launched < count || !tasks.is_empty() {
        while launched < count && tasks.len() < parallel {
            let (ca, status) = (ca.clone(), status.clone());
            tasks.spawn(async move {
                let mut socket =
                    keyward_tests::ws_client::WsClient::try_connect(addr, &ca, "/ws-api/v3", &[])
                        .await
                        .ok()?;
                let reply = socket.request(&status).await;
                (reply["status"] == 200).then_some(socket)
            });
            launched += 1;
        }
        match tasks.join_next().await {
            Some(Ok(Some(socket))) => sockets.push(socket),
            Some(_) => failed += 1,
            None => {}
        }
    }
    HeldStreams {
        sockets,
        failed,
        elapsed: started.elapsed(),
    }
}
