//! keyward as a separate process (the `keyward-e2e` binary, which is the production
//! entry point): for what only a real process shows: its resource limits, its
//! response to signals, its logs at every level, and what its memory holds.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::client::BotClient;
use crate::{
    FixturePolicy, FixtureTokens, Serving, TempDir, fixture_tokens, write_fixture_serving,
};

/// How a spawned keyward gets its vault key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaultKey {
    /// `file:master.key` (the fixture's default).
    File,
    /// `env:KEYWARD_TEST_MASTER_KEY`, holding the key file's bytes in hex.
    Env,
}

/// The variable [`VaultKey::Env`] uses.
pub const MASTER_KEY_VARIABLE: &str = "KEYWARD_TEST_MASTER_KEY";

/// A `keyward serve` child process.
#[derive(Debug)]
pub struct KeywardProcess {
    /// Its directory (configuration, vault, CA, audit log, log).
    pub dir: TempDir,
    /// The configuration file.
    pub config: PathBuf,
    /// Its process id.
    pub pid: u32,
    /// A client trusting its CA.
    pub client: BotClient,
    /// Where bots connect.
    pub bot_addr: std::net::SocketAddr,
    /// The admin listener.
    pub admin_addr: std::net::SocketAddr,
    /// The fixture bots' tokens.
    pub tokens: FixtureTokens,
    /// The master key in hex, for [`VaultKey::Env`].
    pub master_key_hex: String,
    log: PathBuf,
    child: Child,
    exe: PathBuf,
    env: Vec<(String, String)>,
    relative_config: bool,
}

impl KeywardProcess {
    /// Writes `policy` in front of `upstream` (with `server_extra` lines in `[server]`
    /// and `tables` appended), a vault with the canary credentials, and starts `exe
    /// serve` (the `keyward-e2e` binary, whose path only the integration test knows)
    /// with `env`; returns once it listens.
    pub fn spawn(
        exe: &Path,
        policy: FixturePolicy,
        upstream: (String, PathBuf),
        server_extra: &str,
        tables: &str,
        key: VaultKey,
        env: &[(&str, &str)],
    ) -> Self {
        Self::spawn_serving(
            exe,
            policy,
            Serving {
                upstream: Some(upstream),
                server_extra: server_extra.to_owned(),
                tables: tables.to_owned(),
                ..Serving::default()
            },
            key,
            env,
        )
    }

    /// [`KeywardProcess::spawn`] with every fixture option.
    pub fn spawn_serving(
        exe: &Path,
        policy: FixturePolicy,
        serving: Serving,
        key: VaultKey,
        env: &[(&str, &str)],
    ) -> Self {
        let dir = TempDir::new("process");
        let tokens = fixture_tokens();
        let serving = Serving {
            listen: Some("127.0.0.1:0".to_owned()),
            server_extra: format!("admin = \"127.0.0.1:0\"\n{}", serving.server_extra),
            order_rate: Some(serving.order_rate.unwrap_or_else(|| "100000/s".to_owned())),
            ..serving
        };
        let config =
            write_fixture_serving(dir.path(), policy, &tokens, SystemTime::now(), &serving);
        crate::launch::write_vault(dir.path());
        let master_key_hex: String = std::fs::read(dir.path().join("master.key"))
            .expect("master key")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if key == VaultKey::Env {
            let text = std::fs::read_to_string(&config).expect("config");
            std::fs::write(
                &config,
                text.replace(
                    "key = \"file:master.key\"",
                    &format!("key = \"env:{MASTER_KEY_VARIABLE}\""),
                ),
            )
            .expect("config");
            std::fs::remove_file(dir.path().join("master.key")).expect("key file");
        }
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        if key == VaultKey::Env {
            env.push((MASTER_KEY_VARIABLE.to_owned(), master_key_hex.clone()));
        }
        let relative = serving.relative_config;
        Self::start(exe, dir, config, tokens, master_key_hex, env, relative)
    }

    fn start(
        exe: &Path,
        dir: TempDir,
        config: PathBuf,
        tokens: FixtureTokens,
        master_key_hex: String,
        env: Vec<(String, String)>,
        relative_config: bool,
    ) -> Self {
        let log = dir.path().join("keyward.log");
        let log_file = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let start = std::fs::metadata(&log).map_or(0, |m| m.len());
        let config_arg = match (relative_config, config.file_name()) {
            (true, Some(name)) => PathBuf::from(name),
            _ => config.clone(),
        };
        let mut child = Command::new(exe)
            .arg("--config")
            .arg(&config_arg)
            .arg("serve")
            .current_dir(dir.path())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .expect("keyward-e2e starts");
        let pid = child.id();
        let (bot_addr, admin_addr) = wait_until_listening(&mut child, &log, start);
        Self {
            client: BotClient::new(bot_addr, &dir.path().join("tls/ca.pem")),
            dir,
            config,
            pid,
            bot_addr,
            admin_addr,
            tokens,
            master_key_hex,
            log,
            child,
            exe: exe.to_path_buf(),
            env,
            relative_config,
        }
    }

    /// `kill -9`, then the same configuration, vault, audit log and state started
    /// again, as a supervisor would.
    pub fn kill_and_restart(mut self) -> Self {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.start_again()
    }

    /// SIGTERM, which keyward answers with a clean stop (drain, `stop` record,
    /// checkpoint), then started again on the same files.
    pub fn stop_and_restart(mut self) -> Self {
        self.signal("TERM");
        let stopped = self.wait(Duration::from_secs(30));
        assert!(
            stopped.is_some_and(|status| status.success()),
            "keyward did not stop cleanly ({stopped:?}):\n{}",
            self.log()
        );
        self.start_again()
    }

    fn start_again(mut self) -> Self {
        let exe = self.exe.clone();
        let env = std::mem::take(&mut self.env);
        let config = self.config.clone();
        let tokens = self.tokens.clone();
        let master_key_hex = self.master_key_hex.clone();
        let dir = std::mem::replace(&mut self.dir, TempDir::new("process-moved"));
        let relative = self.relative_config;
        Self::start(&exe, dir, config, tokens, master_key_hex, env, relative)
    }

    /// True while the process has not exited.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Everything it wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal by name (`HUP`, `TERM`, `ABRT`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid.to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name} {}", self.pid);
    }

    /// Waits up to `timeout` for it to exit.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The first fixture bot's form-encoded `POST` to `path` on the bot listener.
    pub async fn post_as_bot(&self, path: &str, body: &str) -> crate::client::Response {
        let headers = crate::client::bot_headers(self.bot_addr.port(), &self.tokens.bot, true);
        self.client
            .request("POST", path, &headers, body.as_bytes())
            .await
    }

    /// `GET` (or `POST`) on the admin listener: (status, body).
    pub fn admin(&self, method: &str, path: &str) -> (u16, String) {
        use std::io::Write as _;
        let mut stream = std::net::TcpStream::connect(self.admin_addr).expect("admin connect");
        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
        let _ = write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_owned();
        (status, body)
    }

    /// A Prometheus sample's value from the admin listener's /metrics.
    pub fn metric(&self, sample: &str) -> Option<f64> {
        let (_, body) = self.admin("GET", "/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
    }

    /// Its established TCP connections to `port` (its upstream connections, when
    /// `port` is the exchange's).
    pub fn connections_to(&self, port: u16) -> u64 {
        tcp_sockets(self.pid)
            .get(&format!("established to :{port}"))
            .copied()
            .unwrap_or(0)
    }

    /// `/proc/<pid>/<file>` as text.
    pub fn proc_file(&self, file: &str) -> String {
        std::fs::read_to_string(format!("/proc/{}/{file}", self.pid)).unwrap_or_default()
    }

    /// Finds each needle in the process's readable memory, read through
    /// `/proc/<pid>/mem` (root, or `EPERM` for anyone else because keyward is not
    /// dumpable).
    pub fn scan_memory(&self, needles: &[&[u8]]) -> std::io::Result<MemoryScan> {
        scan_memory(self.pid, needles)
    }

    /// `len` bytes of its memory from `address` (as [`MemoryScan::addresses`] gives).
    pub fn read_memory(&self, address: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let mem = File::open(format!("/proc/{}/mem", self.pid))?;
        let mut buffer = vec![0u8; len];
        let read = mem.read_at(&mut buffer, address)?;
        buffer.truncate(read);
        Ok(buffer)
    }

    /// The audit log's lines.
    pub fn audit(&self) -> Vec<serde_json::Value> {
        crate::audit_lines(self.dir.path())
    }

    /// The directory it runs in.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl KeywardProcess {
    /// Stops it, as dropping it does, but keeps its directory (configuration, audit
    /// log, keyward's log) and returns where it is.
    pub fn keep_dir(mut self) -> PathBuf {
        let dir = std::mem::replace(&mut self.dir, TempDir::new("keyward-stopped"));
        drop(self);
        dir.keep()
    }
}

impl Drop for KeywardProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for the "keyward listening on" line; returns the bot and admin addresses.
fn wait_until_listening(
    child: &mut Child,
    log: &Path,
    from: u64,
) -> (std::net::SocketAddr, std::net::SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let all = std::fs::read(log).unwrap_or_default();
        let text = String::from_utf8_lossy(
            all.get(usize::try_from(from).unwrap_or(0)..)
                .unwrap_or_default(),
        )
        .into_owned();
        if let Some(line) = text
            .lines()
            .find(|l| l.contains("keyward listening on https://"))
        {
            let addr = |after: &str, until: char| -> std::net::SocketAddr {
                let start = line.find(after).expect("address") + after.len();
                let rest = &line[start..];
                rest[..rest.find(until).unwrap_or(rest.len())]
                    .parse()
                    .expect("address")
            };
            return (addr("https://", ' '), addr("admin: http://", ')'));
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("keyward exited ({status}) before listening:\n{text}");
        }
        assert!(Instant::now() < deadline, "keyward did not start:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A process's TCP sockets by state and the port at the other end (or `listen` and
/// the local port), from `/proc/net/tcp`: which connections a descriptor count is
/// made of.
pub fn tcp_sockets(pid: u32) -> BTreeMap<String, u64> {
    let mut inodes = std::collections::HashSet::new();
    if let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for entry in entries.flatten() {
            if let Ok(target) = std::fs::read_link(entry.path())
                && let Some(inode) = target
                    .to_string_lossy()
                    .strip_prefix("socket:[")
                    .and_then(|rest| rest.strip_suffix(']'))
            {
                inodes.insert(inode.to_owned());
            }
        }
    }
    let port = |field: &str| {
        field
            .rsplit(':')
            .next()
            .and_then(|hex| u16::from_str_radix(hex, 16).ok())
            .unwrap_or(0)
    };
    let mut kinds = BTreeMap::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(remote), Some(state), Some(inode)) =
                (fields.get(1), fields.get(2), fields.get(3), fields.get(9))
            else {
                continue;
            };
            if !inodes.contains(*inode) {
                continue;
            }
            let name = match *state {
                "0A" => format!("listen :{}", port(local)),
                "01" => format!("established to :{}", port(remote)),
                other => format!("state {other} to :{}", port(remote)),
            };
            *kinds.entry(name).or_default() += 1;
        }
    }
    kinds
}

/// See [`KeywardProcess::scan_memory`].
pub fn scan_memory(pid: u32, needles: &[&[u8]]) -> std::io::Result<MemoryScan> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    let mem = File::open(format!("/proc/{pid}/mem"))?;
    let longest = needles.iter().map(|n| n.len()).max().unwrap_or(1);
    let mut places = vec![Vec::new(); needles.len()];
    let mut addresses = vec![Vec::new(); needles.len()];
    let mut total = 0u64;
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !perms.starts_with('r') || line.ends_with("[vvar]") || line.ends_with("[vsyscall]") {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        else {
            continue;
        };
        // Read in chunks that overlap by the longest needle, so nothing straddling a
        // chunk boundary is missed or counted twice.
        const CHUNK: u64 = 1 << 20;
        let mut at = start;
        let mut carry: Vec<u8> = Vec::new();
        while at < end {
            let len = usize::try_from(CHUNK.min(end - at)).expect("chunk");
            let mut buffer = vec![0u8; len];
            let Ok(read) = mem.read_at(&mut buffer, at) else {
                break;
            };
            if read == 0 {
                break;
            }
            buffer.truncate(read);
            total += read as u64;
            let mut window = std::mem::take(&mut carry);
            let carried = window.len();
            window.extend_from_slice(&buffer);
            let base = at - carried as u64;
            for ((needle, found), at) in needles
                .iter()
                .zip(places.iter_mut())
                .zip(addresses.iter_mut())
            {
                for offset in occurrences(&window, needle, carried) {
                    at.push(base + offset as u64);
                    found.push(format!(
                        "{:#x}, {} bytes below the end of `{line}`",
                        base + offset as u64,
                        end - base - offset as u64
                    ));
                }
            }
            let keep = window.len().min(longest.saturating_sub(1));
            carry = window[window.len() - keep..].to_vec();
            at += read as u64;
        }
    }
    Ok(MemoryScan {
        places,
        addresses,
        bytes: total,
    })
}

/// Offsets of `needle` in `haystack` that end after `skip` bytes (those ending
/// earlier were found with the previous chunk).
fn occurrences(haystack: &[u8], needle: &[u8], skip: usize) -> Vec<usize> {
    let Some((&first, _)) = needle.split_first() else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(offset) = haystack[from..].iter().position(|&b| b == first) {
        let at = from + offset;
        if haystack[at..].starts_with(needle) && at + needle.len() > skip {
            found.push(at);
        }
        from = at + 1;
    }
    found
}

/// What a memory scan found.
#[derive(Debug)]
pub struct MemoryScan {
    /// For each needle, where it was found (address and mapping).
    pub places: Vec<Vec<String>>,
    /// For each needle, the addresses it was found at.
    pub addresses: Vec<Vec<u64>>,
    /// Bytes read.
    pub bytes: u64,
}

impl MemoryScan {
    /// How many times each needle was found.
    pub fn counts(&self) -> Vec<usize> {
        self.places.iter().map(Vec::len).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn occurrences_respect_the_carried_prefix() {
        assert_eq!(occurrences(b"abcabc", b"abc", 0), [0, 3]);
        assert_eq!(occurrences(b"abcabc", b"abc", 3), [3]);
        assert_eq!(occurrences(b"xxabcab", b"abc", 3), [2]);
        assert_eq!(occurrences(b"aaaa", b"aa", 0), [0, 1, 2]);
    }

    #[test]
    fn scanning_finds_what_this_process_holds() {
        let marker = std::hint::black_box(b"KEYWARD-SCAN-MARKER-4f1c2a".to_vec());
        let scan = scan_memory(std::process::id(), &[&marker]).unwrap();
        assert!(scan.bytes > 1_000_000);
        assert!(
            scan.counts()[0] >= 1,
            "the scanner sees this process's own heap"
        );
    }
}
