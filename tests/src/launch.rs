//! Starts a real keyward in-process for a test: a fixture policy, a vault holding the
//! canary credentials, its own CA, and an audit log, all in a temporary directory.

use std::path::PathBuf;
use std::time::SystemTime;

use keyward::config::Config;
use keyward::credential::KeyKind;
use keyward::server::Running;
use keyward::vault::{self, Entry, KeyMaterial, Vault};
use zeroize::Zeroizing;

use crate::client::BotClient;
use crate::mock::Mock;
use crate::{
    FixturePolicy, FixtureTokens, Serving, TempDir, canary, fixture_tokens, write_fixture_serving,
};

/// A running keyward and what a test needs to talk to it.
#[derive(Debug)]
pub struct Keyward {
    /// Its directory (configuration, vault, CA, audit log).
    pub dir: TempDir,
    /// The configuration file.
    pub config: PathBuf,
    /// The running server.
    pub running: Running,
    /// A client trusting its CA.
    pub client: BotClient,
    /// The fixture bots' tokens.
    pub tokens: FixtureTokens,
}

impl Keyward {
    /// keyward serving `policy` in front of `mock` (or an unreachable `upstream`).
    pub async fn start(policy: FixturePolicy, mock: &Mock, server_extra: &str) -> Self {
        Self::start_with_upstream(policy, (mock.url(), mock.ca.clone()), server_extra).await
    }

    /// keyward serving `policy` with an explicit upstream.
    pub async fn start_with_upstream(
        policy: FixturePolicy,
        upstream: (String, PathBuf),
        server_extra: &str,
    ) -> Self {
        Self::launch(policy, upstream, server_extra, "", "10/10m").await
    }

    /// keyward serving `policy`, with extra `[server]` lines, extra tables, and bot A's
    /// order rate.
    pub async fn launch(
        policy: FixturePolicy,
        upstream: (String, PathBuf),
        server_extra: &str,
        tables: &str,
        order_rate: &str,
    ) -> Self {
        Self::serve(
            policy,
            Serving {
                listen: None,
                upstream: Some(upstream),
                server_extra: server_extra.to_owned(),
                tables: tables.to_owned(),
                order_rate: Some(order_rate.to_owned()),
                bot_extra: String::new(),
                account_extra: String::new(),
                relative_config: false,
            },
        )
        .await
    }

    /// keyward serving `policy` as `serving` says, on a free loopback port with an
    /// admin listener.
    pub async fn serve(policy: FixturePolicy, serving: Serving) -> Self {
        let dir = TempDir::new("keyward");
        let tokens = fixture_tokens();
        let serving = Serving {
            listen: Some("127.0.0.1:0".to_owned()),
            server_extra: format!("admin = \"127.0.0.1:0\"\n{}", serving.server_extra),
            ..serving
        };
        let config_path =
            write_fixture_serving(dir.path(), policy, &tokens, SystemTime::now(), &serving);
        write_vault(dir.path());
        let config = Config::load(&config_path, SystemTime::now())
            .unwrap_or_else(|d| panic!("test configuration is invalid:\n{d}"));
        let running = keyward::server::start(config)
            .await
            .expect("keyward starts");
        let client = BotClient::new(running.bot_addr, &running.ca_path);
        Self {
            dir,
            config: config_path,
            running,
            client,
            tokens,
        }
    }

    /// keyward serving `policy` against `mock`, its accounts' WebSockets going to
    /// the mock too (`stream_upstream`), `bot_extra` in bot A's policy.
    pub async fn serve_streaming(policy: FixturePolicy, mock: &Mock, bot_extra: &str) -> Self {
        let mut serving = Serving::against(mock);
        serving.account_extra =
            format!("stream_upstream = \"wss://127.0.0.1:{}\"", mock.addr.port());
        serving.bot_extra = bot_extra.to_owned();
        Self::serve(policy, serving).await
    }

    /// keyward serving `policy`, its account's WebSockets going to `mock` and its
    /// market data to `market` (a mock serving as the venue's market host), trusting
    /// both mocks' CAs through one bundle, which lives in the directory returned.
    pub async fn serve_with_market_host(
        policy: FixturePolicy,
        mock: &Mock,
        market: &Mock,
    ) -> (Self, TempDir) {
        market.serve_as_market_host();
        let dir = TempDir::new("two-cas");
        let bundle = dir.path().join("cas.pem");
        let both = [&mock.ca, &market.ca]
            .iter()
            .map(|ca| std::fs::read_to_string(ca).expect("a CA"))
            .collect::<String>();
        std::fs::write(&bundle, both).expect("write the CA bundle");
        let mut serving = Serving::against(mock);
        serving.upstream = Some((mock.url(), bundle));
        serving.account_extra = format!(
            "stream_upstream = \"wss://127.0.0.1:{}\"\nmarket_upstream = \"wss://127.0.0.1:{}\"",
            mock.addr.port(),
            market.addr.port()
        );
        (Self::serve(policy, serving).await, dir)
    }

    /// The arguments a client scenario script (`tests/clients/*.py`) takes through
    /// keyward: the scenario `name`, keyward's REST base, its WebSocket base with
    /// `ws_path` after it, the `credentials` the script wants (a key, a secret, ...;
    /// the token as the key, and anything for what keyward discards), keyward's CA.
    pub fn scenario_args(&self, name: &str, ws_path: &str, credentials: &[&str]) -> Vec<String> {
        let mut args = vec![
            name.to_owned(),
            format!("https://localhost:{}", self.port()),
            format!("wss://localhost:{}{ws_path}", self.port()),
        ];
        args.extend(credentials.iter().map(|c| (*c).to_owned()));
        args.push(self.running.ca_path.display().to_string());
        args
    }

    /// A WebSocket to keyward's `path` (panics unless keyward switches protocols).
    pub async fn websocket(&self, path: &str) -> crate::ws_client::WsClient {
        crate::ws_client::WsClient::connect(self.running.bot_addr, &self.running.ca_path, path, &[])
            .await
    }

    /// The port bots connect to.
    pub fn port(&self) -> u16 {
        self.running.bot_addr.port()
    }

    /// A form POST from the bot holding `token`.
    pub async fn post(&self, token: &str, path: &str, body: &str) -> crate::client::Response {
        self.client
            .request(
                "POST",
                path,
                &crate::client::bot_headers(self.port(), token, true),
                body.as_bytes(),
            )
            .await
    }

    /// A GET from the bot holding `token`.
    pub async fn get(&self, token: &str, target: &str) -> crate::client::Response {
        self.client
            .request(
                "GET",
                target,
                &crate::client::bot_headers(self.port(), token, false),
                b"",
            )
            .await
    }

    /// The audit log's lines.
    pub fn audit(&self) -> Vec<serde_json::Value> {
        crate::audit_lines(self.dir.path())
    }

    /// keyward's own status for a refusal it answered ([`crate::refused_with`]).
    pub fn refused_with(&self, response: &crate::client::Response) -> Option<u16> {
        crate::refused_with(&self.audit(), response)
    }
}

/// A new vault keyed by a new raw key file, `dir/master.key`.
fn create_vault(dir: &std::path::Path) -> Vault {
    let key_path = dir.join("master.key");
    vault::generate_key_file(&key_path).expect("key file");
    let material = vault::read_key(&keyward::config::KeySource::File(key_path)).expect("key");
    assert!(matches!(material, KeyMaterial::Raw(_)));
    Vault::create(&dir.join("keyward.vault"), &material, vault::DEFAULT_ARGON2).expect("vault")
}

/// Adds the canary HMAC credentials (and, if asked, the canary passphrase) as `name`.
fn add_canary(opened: &mut Vault, name: &str, with_passphrase: bool) {
    let passphrase =
        with_passphrase.then(|| Zeroizing::new(canary::PASSPHRASE.as_bytes().to_vec()));
    let entry = Entry {
        api_key: canary::API_KEY.to_owned(),
        kind: KeyKind::Hmac,
        secret: Zeroizing::new(canary::SECRET.as_bytes().to_vec()),
        passphrase,
        venue: None,
        created: 0,
    };
    opened.add(name, &entry).expect("vault entry");
}

/// A vault keyed by `dir/master.key` (created) with the canary HMAC credentials under
/// each of `names`: what `check` needs to find beside a configuration.
pub fn write_vault_with(dir: &std::path::Path, names: &[&str]) {
    let mut opened = create_vault(dir);
    for name in names {
        add_canary(&mut opened, name, false);
    }
}

/// A vault (raw key file) with the canary credentials under `spot` and `futures`.
pub fn write_vault(dir: &std::path::Path) {
    let mut opened = create_vault(dir);
    for name in ["spot", "futures"] {
        add_canary(&mut opened, name, true);
    }
    for (name, entry) in crate::venues::vault_entries() {
        opened.add(name, &entry).expect("venue vault entry");
    }
}
