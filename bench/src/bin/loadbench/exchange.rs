//! The benchmark's exchange: a fast HTTPS server that answers every request with a
//! fixed Binance-shaped JSON body (an order acknowledgement for writes, an account
//! for reads, the real time for `/api/v3/time` so keyward's clock check succeeds).
//! HTTP/1.1 with keep-alive, hyper over tokio-rustls, nothing recorded: unlike the
//! verifying mock of the end-to-end tests it exists to cost as little as possible, so
//! that the three paths measured differ only by what sits between bot and exchange.
//! Binance's WebSocket API (`/ws-api/v3`) is answered the same way: each message with
//! the order acknowledgement under its own id, whatever it asked.
//!
//! It runs as its own process (the loadbench binary started under the name
//! `loadbench-exchange`), so that its CPU and memory are not the bench's or keyward's.

use std::convert::Infallible;
use std::io::Write as _;
use std::path::Path;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// What Binance answers a new limit order with (`newOrderRespType=ACK`, the default
/// for limit orders), with a fixed order id: open-order tracking in keyward then
/// holds one order, whatever the number of requests.
const ORDER_ACK: &str = r#"{"symbol":"BTCUSDT","orderId":28457,"orderListId":-1,"clientOrderId":"6gCrw2kRUAF9CvJDGP16IP","transactTime":1507725176595}"#;

/// A short account answer (a real one lists every asset).
const ACCOUNT: &str = r#"{"makerCommission":15,"takerCommission":15,"buyerCommission":0,"sellerCommission":0,"canTrade":true,"canWithdraw":true,"canDeposit":true,"updateTime":123456789,"accountType":"SPOT","balances":[{"asset":"BTC","free":"4723846.89208129","locked":"0.00000000"},{"asset":"USDT","free":"4763368.68006011","locked":"0.00000000"}],"permissions":["SPOT"]}"#;

/// Serves in `dir` (which receives its CA and certificate) until killed; prints
/// `port <n>` on stdout once listening.
pub(crate) fn main(dir: &Path) -> std::process::ExitCode {
    let acceptor = TlsAcceptor::from(keyward_tests::test_server_tls(dir));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let mut stdout = std::io::stdout();
        writeln!(stdout, "port {port}").expect("stdout");
        stdout.flush().expect("stdout");
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(tls), service_fn(answer))
                    .with_upgrades()
                    .await;
            });
        }
    })
}

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if let Some(key) = request
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|key| key.to_str().ok())
        .map(str::to_owned)
    {
        return Ok(websocket(request, &key));
    }
    let write = request.method() != http::Method::GET;
    let time = request.uri().path() == "/api/v3/time";
    // Read the whole body, as a real server does, so the connection stays reusable.
    let _ = request.into_body().collect().await;
    let body = if time {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        Bytes::from(format!("{{\"serverTime\":{now}}}"))
    } else if write {
        Bytes::from_static(ORDER_ACK.as_bytes())
    } else {
        Bytes::from_static(ACCOUNT.as_bytes())
    };
    let mut response = Response::new(Full::new(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    Ok(response)
}

/// Switches to the WebSocket the request asks for, and answers each of its messages
/// with an order acknowledgement under the message's id.
fn websocket(request: Request<Incoming>, key: &str) -> Response<Full<Bytes>> {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    tokio::spawn(async move {
        let Ok(upgraded) = hyper::upgrade::on(request).await else {
            return;
        };
        let mut socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            tokio_tungstenite::tungstenite::protocol::Role::Server,
            None,
        )
        .await;
        while let Some(Ok(message)) = socket.next().await {
            let Message::Text(text) = message else {
                continue;
            };
            let id = serde_json::from_str::<serde_json::Value>(text.as_str())
                .map(|m| m["id"].to_string())
                .unwrap_or_else(|_| "null".to_owned());
            let reply =
                format!("{{\"id\":{id},\"status\":200,\"result\":{ORDER_ACK},\"rateLimits\":[]}}");
            if socket.send(Message::text(reply)).await.is_err() {
                return;
            }
        }
    });
    let mut response = Response::new(Full::default());
    *response.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&keyward::streams::accept_value(key)) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// The name the loadbench binary answers to as the exchange.
pub(crate) const PROCESS_NAME: &str = "loadbench-exchange";

/// A running exchange process.
#[derive(Debug)]
pub(crate) struct Exchange {
    /// Its port on 127.0.0.1.
    pub(crate) port: u16,
    /// The CA its certificate chains to.
    pub(crate) ca: std::path::PathBuf,
    child: std::process::Child,
}

impl Exchange {
    /// Starts `exe` (the loadbench binary under [`PROCESS_NAME`]) serving from `dir`.
    pub(crate) fn start(exe: &Path, dir: &Path) -> Self {
        use std::io::BufRead as _;
        std::fs::create_dir_all(dir).expect("exchange dir");
        let mut child = std::process::Command::new(exe)
            .arg(dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("exchange starts");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("exchange stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("exchange port");
        let port = line
            .trim()
            .strip_prefix("port ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the exchange did not say its port: {line:?}"));
        Self {
            port,
            ca: dir.join(keyward_certs::CA_CERT),
            child,
        }
    }

    /// `https://127.0.0.1:<port>`.
    pub(crate) fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
