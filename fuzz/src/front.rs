//! The `http_front` target: raw bytes into one HTTP/1 bot connection, served by
//! [`keyward::server::serve_http`] (the framing guard, hyper, the front checks and the
//! whole pipeline) over an in-memory stream.
//!
//! keyward runs the P0 fixture of the end-to-end tests (the attack corpus's policy, its
//! tokens, Host `localhost:8443`) with bot `a` in dry-run mode, so allowed requests are
//! answered with what would have been sent, and every account's upstream at a closed
//! local port, so nothing leaves the machine. Time is tokio's paused clock: waiting for
//! the next request or for a deadline costs nothing.
//!
//! Checked: no panic; the connection ends (closes, or goes idle and closes once the
//! client does) within a minute of virtual time; everything keyward wrote is a sequence
//! of well-formed HTTP/1.x responses; neither the answer nor what the audit log gained
//! contains a bot token (wherever the input put it, as it is or percent-encoded) or the
//! account's canary secret or passphrase (unless the input itself carries them).
//! `KEYWARD_FUZZ_SHOW=1` prints each answer.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use keyward::app::App;
use keyward::config::Config;
use keyward::identity::Transport;
use keyward::pipeline::ConnInfo;
use keyward_venues::form::decode_lenient;
use keyward_tests::{FixturePolicy, Serving, canary};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The corpus's listener port, which its Host headers name.
pub const PORT: u16 = 8443;
/// How long keyward may take, in virtual time, to answer what it was sent.
const ANSWER_WITHIN: Duration = Duration::from_secs(60);
/// Rotated audit files are removed this often (in inputs).
const CLEAN_EVERY: usize = 4096;

struct Front {
    dir: PathBuf,
    /// How much of the audit log earlier inputs wrote.
    audit_read: Mutex<u64>,
    app: Arc<App>,
    runtime: tokio::runtime::Runtime,
    /// The fixture bots' tokens: in no answer and no audit line, ever.
    tokens: Vec<String>,
    /// The account's secret and passphrase: in no answer and no audit line, unless
    /// the input itself carries them.
    exchange_secrets: Vec<String>,
    inputs: AtomicUsize,
}

/// Serves one input on a fresh connection and checks what came back.
pub fn run(data: &[u8]) {
    let front = front();
    let answer = front.runtime.block_on(converse(front.app.clone(), data));
    if std::env::var_os("KEYWARD_FUZZ_SHOW").is_some() {
        // For looking at what keyward answered to one input (`cargo fuzz run` on a file).
        eprintln!("{}", String::from_utf8_lossy(&answer));
    }
    if let Err(problem) = check_answer(&answer, asks_head(data)) {
        panic!(
            "malformed answer ({problem}):\n{}",
            String::from_utf8_lossy(&answer)
        );
    }
    let logged = front.new_audit_lines();
    // An exchange secret the input itself carries is the sender's own to repeat; a
    // token is never to be logged or echoed, wherever the bot put it (corpus AUTH-004).
    let secrets = front.tokens.iter().chain(
        front
            .exchange_secrets
            .iter()
            .filter(|secret| !contains(data, secret.as_bytes())),
    );
    // A token percent-encoded (`kw%5Fa%5F...`) is a token too.
    let decoded_answer = decode_lenient(&String::from_utf8_lossy(&answer)).into_owned();
    let decoded_logged = decode_lenient(&String::from_utf8_lossy(&logged)).into_owned();
    for token in &front.tokens {
        assert!(
            !decoded_answer.contains(token.as_str()),
            "the answer contains a percent-encoded token:\n{decoded_answer}"
        );
        assert!(
            !decoded_logged.contains(token.as_str()),
            "the audit log records a percent-encoded token:\n{decoded_logged}"
        );
    }
    for secret in secrets {
        assert!(
            !contains(&answer, secret.as_bytes()),
            "the answer contains a secret:\n{}",
            String::from_utf8_lossy(&answer)
        );
        assert!(
            !contains(&logged, secret.as_bytes()),
            "the audit log records a secret:\n{}",
            String::from_utf8_lossy(&logged)
        );
    }
    if front.inputs.fetch_add(1, Ordering::Relaxed) % CLEAN_EVERY == CLEAN_EVERY - 1 {
        remove_rotated_audit(&front.dir);
    }
}

async fn converse(app: Arc<App>, data: &[u8]) -> Vec<u8> {
    // Room for the whole input, so it is written before keyward reads any of it.
    let (mut client, server) = tokio::io::duplex(data.len().max(64 * 1024));
    client
        .write_all(data)
        .await
        .expect("the input fits the pipe");
    let conn = ConnInfo {
        peer: "127.0.0.1:40000".to_owned(),
        transport: Transport::Plain,
        http2: false,
        verdicts: None,
        websocket: false,
    };
    let (_stop, stop) = tokio::sync::watch::channel(false);
    let served = tokio::spawn(keyward::server::serve_http(server, conn, app, stop));
    let mut answer = Vec::new();
    let ended = tokio::time::timeout(ANSWER_WITHIN, client.read_to_end(&mut answer)).await;
    if ended.is_err() {
        // Idle with the client's side open, as a keep-alive connection may be; once the
        // client closes its side keyward must close too.
        let _ = client.shutdown().await;
        let rest = tokio::time::timeout(ANSWER_WITHIN, client.read_to_end(&mut answer)).await;
        assert!(
            rest.is_ok(),
            "the connection stays open after the client closed"
        );
    }
    let _ = served.await;
    answer
}

/// True if some request line of the input may be a HEAD: the answer to it has the
/// head (Content-Length included) of a GET's answer and no body.
fn asks_head(data: &[u8]) -> bool {
    data.starts_with(b"HEAD ") || contains(data, b"\nHEAD ")
}

/// The answer is zero or more complete HTTP/1.x responses and nothing else. With
/// `head_asked`, a response may stop after its head (the answer to a HEAD), if what
/// follows is the next response or nothing.
fn check_answer(mut rest: &[u8], head_asked: bool) -> Result<(), String> {
    while !rest.is_empty() {
        let head_end = find(rest, b"\r\n\r\n").ok_or("a response head never ends")?;
        let head = std::str::from_utf8(&rest[..head_end]).map_err(|_| "head is not UTF-8")?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        // hyper answers an HTTP/1.0 request in HTTP/1.0, as RFC 9110 section 6.2 asks.
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse::<u16>().ok())
            .filter(|s| (100..=599).contains(s))
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let mut length = None;
        let mut chunked = false;
        for line in lines {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| format!("bad header line {line:?}"))?;
            if name.is_empty() || !name.bytes().all(is_token) {
                return Err(format!("bad header name {name:?}"));
            }
            let value = value.trim_matches(' ');
            if name.eq_ignore_ascii_case("content-length") {
                if length.is_some() {
                    return Err("two Content-Length headers".to_owned());
                }
                length = Some(value.parse::<usize>().map_err(|_| "bad Content-Length")?);
            }
            if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            }
        }
        rest = &rest[head_end + 4..];
        if status < 200 || status == 204 || status == 304 {
            continue;
        }
        if head_asked && (rest.is_empty() || rest.starts_with(b"HTTP/1.")) {
            continue;
        }
        rest = match (length, chunked) {
            (Some(_), true) => return Err("both Content-Length and chunked".to_owned()),
            (Some(length), false) => rest
                .get(length..)
                .ok_or_else(|| format!("body shorter than its Content-Length {length}"))?,
            (None, true) => skip_chunked(rest)?,
            // Delimited by the close: the rest is this response's body.
            (None, false) => &[],
        };
    }
    Ok(())
}

fn skip_chunked(mut rest: &[u8]) -> Result<&[u8], String> {
    loop {
        let line_end = find(rest, b"\r\n").ok_or("unterminated chunk size")?;
        let size = std::str::from_utf8(&rest[..line_end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or_default(), 16).ok())
            .ok_or("bad chunk size")?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            let end = find(rest, b"\r\n").ok_or("unterminated trailers")?;
            return Ok(&rest[end + 2..]);
        }
        let chunk_end = size.checked_add(2).ok_or("chunk too large")?;
        if rest.get(size..chunk_end) != Some(b"\r\n".as_slice()) {
            return Err("chunk shorter than its size".to_owned());
        }
        rest = &rest[chunk_end..];
    }
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

impl Front {
    /// What the audit log gained since the last call: after a rotation, the rest of
    /// the rotated file and all of the new one.
    fn new_audit_lines(&self) -> Vec<u8> {
        let mut read = self.audit_read.lock().expect("audit offset");
        let current = self.dir.join("audit.jsonl");
        let length = std::fs::metadata(&current).map_or(0, |m| m.len());
        let mut text = Vec::new();
        if length < *read {
            if let Some(rotated) = newest_rotated_audit(&self.dir) {
                text = read_from(&rotated, *read);
            }
            *read = 0;
        }
        let gained = read_from(&current, *read);
        *read += gained.len() as u64;
        text.extend(gained);
        text
    }
}

/// `path` from byte `from` to its end (nothing if it cannot be read).
fn read_from(path: &std::path::Path, from: u64) -> Vec<u8> {
    use std::io::{Read as _, Seek as _};
    let mut text = Vec::new();
    if let Ok(mut file) = std::fs::File::open(path)
        && file.seek(std::io::SeekFrom::Start(from)).is_ok()
    {
        let _ = file.read_to_end(&mut text);
    }
    text
}

/// The audit file rotated last: rotated names carry their time, so it sorts last.
fn newest_rotated_audit(dir: &std::path::Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("audit-"))
        })
        .max()
}

fn remove_rotated_audit(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with("audit-") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn front() -> &'static Front {
    static FRONT: OnceLock<Front> = OnceLock::new();
    FRONT.get_or_init(setup)
}

/// The fixture's files under `target/`, fresh for this process.
fn setup() -> Front {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(format!("http_front-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("fixture directory");
    let tokens = keyward_tests::fixture_tokens();
    let serving = Serving {
        listen: Some(format!("127.0.0.1:{PORT}")),
        upstream: None,
        server_extra: String::new(),
        tables:
            "[audit]\nfile = \"audit.jsonl\"\nmax_file_bytes = 1048576\nfsync_interval_ms = 0\n"
                .to_owned(),
        order_rate: Some("100000/s".to_owned()),
        bot_extra: "mode = \"dry-run\"".to_owned(),
        // Port 9 (discard) is closed here: a forwarded request fails fast, locally.
        account_extra: "upstream = \"https://127.0.0.1:9\"".to_owned(),
        relative_config: false,
    };
    let path = keyward_tests::write_fixture_serving(
        &dir,
        FixturePolicy::P0,
        &tokens,
        SystemTime::now(),
        &serving,
    );
    keyward_tests::launch::write_vault(&dir);
    let config = Config::load(&path, SystemTime::now())
        .unwrap_or_else(|d| panic!("fixture configuration refused:\n{d}"));
    keyward_certs::init(&config.tls.dir, &config.server.names, false).expect("fixture CA");
    let app = App::assemble(config, &[PORT]).expect("keyward assembles");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    let exchange_secrets = vec![canary::SECRET.to_owned(), canary::PASSPHRASE.to_owned()];
    let tokens = vec![tokens.bot, tokens.bot_b, tokens.expired, tokens.revoked];
    Front {
        dir,
        audit_read: Mutex::new(0),
        app: Arc::new(app),
        runtime,
        tokens,
        exchange_secrets,
        inputs: AtomicUsize::new(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kept_input_passes() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions/http_front");
        let mut replayed = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            run(&std::fs::read(entry.unwrap().path()).unwrap());
            replayed += 1;
        }
        assert!(replayed >= 4);
    }

    #[test]
    fn the_answer_to_a_head_request_has_no_body() {
        let answer = b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 79\r\n\r\n";
        assert!(check_answer(answer, asks_head(b"HEAD /nope HTTP/1.1\r\n\r\n")).is_ok());
        // Without a HEAD in the input, a missing body is still a malformed answer.
        assert!(check_answer(answer, asks_head(b"GET /nope HTTP/1.1\r\n\r\n")).is_err());
        let two = b"HTTP/1.1 405 x\r\ncontent-length: 3\r\n\r\nHTTP/1.1 200 y\r\ncontent-length: 2\r\n\r\n{}";
        assert!(check_answer(two, true).is_ok());
        assert!(check_answer(b"HTTP/1.1 200 y\r\ncontent-length: 2\r\n\r\n{", true).is_err());
    }
}
