//! A real `redis-server` (the Debian package `.ci/run` installs) on a loopback port
//! of its own, for the shared state tests: started with AOF persistence flushed on
//! every write (what docs/shared-state.md asks of production), stoppable and
//! restartable on the same port and data directory.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::TempDir;

/// A running (or stopped) `redis-server`.
#[derive(Debug)]
pub struct RedisServer {
    dir: TempDir,
    port: u16,
    appendfsync: String,
    /// Serving TLS only, with the CA and certificate in `dir/tls`.
    tls: bool,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one; panics (saying what to install) when `redis-server` is missing.
    pub fn start() -> Self {
        Self::start_with_fsync("always")
    }

    /// Starts one whose AOF is flushed to disk as `appendfsync` says (`always`,
    /// `everysec`): the benchmark tells the cost of the disk from the round trip.
    pub fn start_with_fsync(appendfsync: &str) -> Self {
        Self::launch(appendfsync, false)
    }

    /// Starts one that speaks TLS only (`rediss://`), with a CA of its own
    /// ([`RedisServer::ca_file`]) and a certificate for localhost and 127.0.0.1.
    pub fn start_tls() -> Self {
        Self::launch("always", true)
    }

    fn launch(appendfsync: &str, tls: bool) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let dir = TempDir::new("redis");
        if tls {
            keyward_certs::init(&dir.path().join("tls"), &[], false).expect("Redis's certificates");
        }
        let mut server = Self {
            dir,
            port,
            appendfsync: appendfsync.to_owned(),
            tls,
            child: None,
        };
        server.restart();
        server
    }

    /// The CA that signed a TLS server's certificate.
    pub fn ca_file(&self) -> std::path::PathBuf {
        self.dir.path().join("tls").join(keyward_certs::CA_CERT)
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts it again on the same port and data (AOF) after [`RedisServer::kill`].
    pub fn restart(&mut self) {
        let tls = self.dir.path().join("tls");
        let (port, tls_args) = if self.tls {
            let file = |name: &str| tls.join(name).display().to_string();
            let args = vec![
                "--tls-port".to_owned(),
                self.port.to_string(),
                "--tls-cert-file".to_owned(),
                file(keyward_certs::SERVER_CERT),
                "--tls-key-file".to_owned(),
                file(keyward_certs::SERVER_KEY),
                "--tls-ca-cert-file".to_owned(),
                file(keyward_certs::CA_CERT),
                "--tls-auth-clients".to_owned(),
                "no".to_owned(),
            ];
            ("0".to_owned(), args)
        } else {
            (self.port.to_string(), Vec::new())
        };
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--dir",
                &self.dir.path().display().to_string(),
                "--appendonly",
                "yes",
                "--appendfsync",
                &self.appendfsync,
                "--save",
                "",
                "--daemonize",
                "no",
            ])
            .args(&tls_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills it at once (SIGKILL): what an acknowledged write must survive.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// True once it answers PING (over TLS with `redis-cli`, which checks the
    /// certificate against the server's CA).
    fn answers(&self) -> bool {
        if !self.tls {
            return self.command(&["PING"]).as_deref() == Some("+PONG");
        }
        Command::new("redis-cli")
            .args(["--tls", "--cacert"])
            .arg(self.ca_file())
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "PING"])
            .output()
            .is_ok_and(|out| out.stdout.starts_with(b"PONG"))
    }

    /// How many times the server ran `command` (lower case), its scripts' calls
    /// included, from `INFO commandstats` (0 before the first).
    pub fn calls_of(&self, command: &str) -> u64 {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["INFO", "commandstats"])
            .output()
            .expect("redis-cli runs");
        let prefix = format!("cmdstat_{command}:calls=");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .and_then(|rest| rest.split(',').next()?.parse().ok())
            .unwrap_or(0)
    }

    /// One command over RESP: a bulk string's value, otherwise the answer's first
    /// line (`+OK`, `:1`, `-ERR ...`); `None` for a nil or no answer.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        self.command_as(None, args)
    }

    /// [`RedisServer::command`] as an ACL user: `(user, password)`.
    pub fn command_as(&self, user: Option<(&str, &str)>, args: &[&str]) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let encode = |args: &[&str]| {
            let mut request = format!("*{}\r\n", args.len());
            for arg in args {
                request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
            }
            request
        };
        let mut buffer = [0u8; 512];
        if let Some((name, password)) = user {
            stream
                .write_all(encode(&["AUTH", name, password]).as_bytes())
                .ok()?;
            let n = stream.read(&mut buffer).ok()?;
            if !buffer[..n].starts_with(b"+OK") {
                return None;
            }
        }
        stream.write_all(encode(args).as_bytes()).ok()?;
        let n = stream.read(&mut buffer).ok()?;
        let text = String::from_utf8_lossy(&buffer[..n]).into_owned();
        let mut lines = text.lines();
        let first = lines.next()?;
        match first.strip_prefix('$') {
            Some("-1") => None,
            Some(_) => lines.next().map(str::to_owned),
            None => Some(first.to_owned()),
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP relay between a keyward and Redis that the test can cut: the network
/// partition of one replica. Cut, it closes every relayed connection and every new
/// one at once; silenced, it holds new connections open and forwards nothing (a
/// Redis that stopped answering, which only the deadline detects); stalled, it
/// keeps its connections and holds what the replica sends until it is resumed (a
/// slow network).
#[derive(Debug)]
pub struct Partition {
    port: u16,
    state: std::sync::Arc<std::sync::atomic::AtomicU8>,
    relays: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

const RELAYING: u8 = 0;
const CUT: u8 = 1;
const SILENT: u8 = 2;
const STALLED: u8 = 3;

impl Partition {
    /// A relay to `target` on loopback, relaying.
    pub async fn start(target: u16) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("relay port");
        let port = listener.local_addr().expect("relay address").port();
        let state = std::sync::Arc::new(std::sync::atomic::AtomicU8::new(RELAYING));
        let relays = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (accept_state, accept_relays) = (state.clone(), relays.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let relay = match accept_state.load(Ordering::SeqCst) {
                    CUT => continue,
                    SILENT => tokio::spawn(async move {
                        let mut sink = [0u8; 4096];
                        while tokio::io::AsyncReadExt::read(&mut inbound, &mut sink)
                            .await
                            .is_ok_and(|n| n > 0)
                        {}
                    }),
                    _ => {
                        let state = accept_state.clone();
                        tokio::spawn(async move {
                            if let Ok(outbound) =
                                tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                            {
                                relay(inbound, outbound, &state).await;
                            }
                        })
                    }
                };
                accept_relays.lock().expect("relays").push(relay);
            }
        });
        Self {
            port,
            state,
            relays,
        }
    }

    /// `redis://127.0.0.1:PORT` through the relay.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Drops every relayed connection and refuses new ones.
    pub fn cut(&self) {
        self.set(CUT);
    }

    /// Drops every relayed connection; new ones are held open and never answered.
    pub fn silence(&self) {
        self.set(SILENT);
    }

    /// Relays again.
    pub fn heal(&self) {
        self.set(RELAYING);
    }

    /// Holds what the replica sends, on the connections it has, until [`Self::resume`].
    pub fn stall(&self) {
        self.state
            .store(STALLED, std::sync::atomic::Ordering::SeqCst);
    }

    /// Forwards what was held, and relays again.
    pub fn resume(&self) {
        self.state
            .store(RELAYING, std::sync::atomic::Ordering::SeqCst);
    }

    fn set(&self, state: u8) {
        self.state.store(state, std::sync::atomic::Ordering::SeqCst);
        for relay in self.relays.lock().expect("relays").drain(..) {
            relay.abort();
        }
    }
}

/// Relays between a replica and Redis until either side closes; while `state` is
/// stalled, what the replica sends waits.
async fn relay(
    inbound: tokio::net::TcpStream,
    outbound: tokio::net::TcpStream,
    state: &std::sync::atomic::AtomicU8,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut from_replica, mut to_replica) = inbound.into_split();
    let (mut from_redis, mut to_redis) = outbound.into_split();
    let upward = async {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let n = from_replica.read(&mut chunk).await?;
            if n == 0 {
                return Ok::<(), std::io::Error>(());
            }
            while state.load(std::sync::atomic::Ordering::SeqCst) == STALLED {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            to_redis.write_all(&chunk[..n]).await?;
        }
    };
    let downward = tokio::io::copy(&mut from_redis, &mut to_replica);
    tokio::select! {
        _ = upward => {}
        _ = downward => {}
    }
}
