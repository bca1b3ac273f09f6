//! `keyward demo`: a self-contained quick start. It writes a configuration, a key
//! file, a vault holding a made-up demo key, and a CA into a fresh directory, mints a
//! bot token, and serves in dry-run mode: allowed requests are answered with the exact
//! request keyward would have sent (credentials as placeholders, never a signature),
//! and nothing leaves the machine.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use keyward_policy::TokenDigest;
use zeroize::Zeroizing;

use crate::credential::KeyKind;
use crate::tokens;
use crate::vault::{self, DEFAULT_ARGON2, Entry, Vault};

/// The demo's bot.
pub const BOT: &str = "demo";

/// A prepared demo directory.
#[derive(Debug)]
pub struct Demo {
    /// The directory holding everything.
    pub dir: PathBuf,
    /// Its configuration file.
    pub config: PathBuf,
    /// The bot's token (printed once).
    pub token: Zeroizing<String>,
}

/// Why the demo could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The vault could not be created.
    #[error("{0}")]
    Vault(#[from] vault::VaultError),
    /// A token could not be minted.
    #[error("{0}")]
    Token(#[from] tokens::TokenError),
}

/// Writes the demo's files into `dir` (created, must be empty or absent), with the bot
/// listener on `port` (0 lets the OS choose) and the admin listener on any free port.
pub fn prepare(dir: &Path, port: u16) -> Result<Demo, DemoError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DemoError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let key_path = dir.join("master.key");
    vault::generate_key_file(&key_path)?;
    let material = vault::read_key(&crate::config::KeySource::File(key_path))?;
    let mut demo_vault = Vault::create(&dir.join("keyward.vault"), &material, DEFAULT_ARGON2)?;
    let mut secret = Zeroizing::new([0u8; 32]);
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut *secret)
        .map_err(|_| vault::VaultError::Crypto)?;
    demo_vault.add(
        "demo",
        &Entry {
            api_key: "demo-api-key-not-a-real-binance-key".to_owned(),
            kind: KeyKind::Hmac,
            secret: Zeroizing::new(keyward_venues::hex(&*secret).into_bytes()),
            passphrase: None,
            venue: Some("binance-spot".to_owned()),
            created: unix_now(),
        },
    )?;
    let token = tokens::mint(BOT)?;
    let expires = time::OffsetDateTime::from(SystemTime::now() + Duration::from_secs(7 * 86_400))
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    let config = format!(
        r#"# Written by `keyward demo`: dry-run, so nothing is ever sent to Binance.
[server]
listen = "127.0.0.1:{port}"
admin = "127.0.0.1:0"

[tls]
dir = "tls"

[vault]
file = "keyward.vault"
key = "file:master.key"

[audit]
file = "audit.jsonl"

[accounts.demo]
venue = "binance-spot"
secret = "demo"

[bots.{BOT}]
account = "demo"
tokens = ["{digest}"]
expires = "{expires}"
allow = ["market", "read", "trade", "cancel"]
symbols = ["BTCUSDT", "ETHUSDT"]
order_types = ["LIMIT", "LIMIT_MAKER", "MARKET"]
max_order_notional = "1000"
rate = "20/s"
mode = "dry-run"
"#,
        digest = TokenDigest::of(&token),
    );
    let config_path = dir.join("keyward.toml");
    std::fs::write(&config_path, config).map_err(io(&config_path))?;
    Ok(Demo {
        dir: dir.to_path_buf(),
        config: config_path,
        token,
    })
}

/// The instructions printed once the demo serves.
pub fn instructions(
    demo: &Demo,
    bot_addr: std::net::SocketAddr,
    admin: Option<std::net::SocketAddr>,
    ca: &Path,
) -> String {
    let base = format!("https://127.0.0.1:{}", bot_addr.port());
    let token = demo.token.as_str();
    let ca = ca.display();
    let curl = format!("curl -sS --cacert {ca} -H 'X-MBX-APIKEY: {token}'");
    let mut text = String::new();
    let _ = writeln!(
        text,
        "keyward demo: dry-run mode, nothing leaves this machine.\n"
    );
    let _ = writeln!(
        text,
        "  directory: {}  (configuration, vault, CA, audit log)",
        demo.dir.display()
    );
    let _ = writeln!(text, "  listening: {base}");
    let _ = writeln!(text, "  bot token: {token}");
    let _ = writeln!(text, "  trust:     {ca}\n");
    let _ = writeln!(
        text,
        "An allowed order, answered with the request keyward would have sent (credentials as placeholders, signature withheld):"
    );
    let _ = writeln!(
        text,
        "  {curl} -X POST '{base}/api/v3/order' -d 'symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=60000'\n"
    );
    let _ = writeln!(
        text,
        "An order on a pair this bot may not trade, refused with 403 symbol_not_allowed:"
    );
    let _ = writeln!(
        text,
        "  {curl} -X POST '{base}/api/v3/order' -d 'symbol=DMGUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1000&price=0.05'\n"
    );
    let _ = writeln!(
        text,
        "A withdrawal, refused whatever any policy says, 403 money_movement_denied:"
    );
    let _ = writeln!(
        text,
        "  {curl} -X POST '{base}/sapi/v1/capital/withdraw/apply' -d 'coin=USDT&network=TRX&address=TAttacker&amount=5000'\n"
    );
    let _ = writeln!(text, "The same from Python with ccxt (pip install ccxt):");
    let _ = writeln!(text, "  import ccxt");
    // ccxt passes `verify and validateServerSsl` to requests, so a CA file given as
    // `verify` collapses to `True` and the system store; `validateServerSsl` is the
    // setting that reaches requests as the CA bundle.
    let _ = writeln!(
        text,
        "  ex = ccxt.binance({{'apiKey': '{token}', 'secret': 'anything', 'validateServerSsl': '{ca}'}})"
    );
    let _ = writeln!(
        text,
        "  ex.urls['api'] = {{k: v.replace('https://api.binance.com', '{base}') for k, v in ex.urls['api'].items()}}"
    );
    let _ = writeln!(
        text,
        "  print(ex.private_post_order({{'symbol': 'BTCUSDT', 'side': 'BUY', 'type': 'LIMIT', 'timeInForce': 'GTC', 'quantity': '0.001', 'price': '60000'}}))"
    );
    let _ = writeln!(
        text,
        "  ex.private_post_order({{'symbol': 'DMGUSDT', 'side': 'BUY', 'type': 'LIMIT', 'timeInForce': 'GTC', 'quantity': '1000', 'price': '0.05'}})  # PermissionDenied\n"
    );
    let _ = writeln!(
        text,
        "Audit log: {}",
        demo.dir.join("audit.jsonl").display()
    );
    if let Some(admin) = admin {
        let _ = writeln!(text, "Metrics:   http://{admin}/metrics");
    }
    let _ = writeln!(text, "Press Ctrl-C to stop.");
    text
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
