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
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut server = Self {
            dir: TempDir::new("redis"),
            port,
            appendfsync: appendfsync.to_owned(),
            child: None,
        };
        server.restart();
        server
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
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
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
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.command(&["PING"]).as_deref() != Some("+PONG") {
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
/// Redis that stopped answering, which only the deadline detects).
#[derive(Debug)]
pub struct Partition {
    port: u16,
    state: std::sync::Arc<std::sync::atomic::AtomicU8>,
    relays: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

const RELAYING: u8 = 0;
const CUT: u8 = 1;
const SILENT: u8 = 2;

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
                    _ => tokio::spawn(async move {
                        if let Ok(mut outbound) =
                            tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                        {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    }),
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

    fn set(&self, state: u8) {
        self.state.store(state, std::sync::atomic::Ordering::SeqCst);
        for relay in self.relays.lock().expect("relays").drain(..) {
            relay.abort();
        }
    }
}
