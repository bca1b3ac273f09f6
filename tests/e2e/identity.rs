//! Bot identity beyond the token: client certificates (issued, required, bound to a
//! bot, revoked, expired, from another CA, absent) with every refusal audited and
//! nothing reaching the exchange; curl and Python requests through mTLS; a server
//! certificate renewed on disk and served to new connections while an old one keeps
//! working; the Unix socket with peer credentials and a uid binding; the loopback
//! plain-HTTP listener.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use keyward_tests::client::{BotClient, Response, bot_headers, build, plain_raw, unix_raw};
use keyward_tests::launch::Keyward;
use keyward_tests::mock::Mock;
use keyward_tests::python::python;
use keyward_tests::{FixturePolicy, Serving, TempDir, digest, rfc3339, run_cli, token};

const ORDER: &str = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=60000";

/// `keyward certs ARGS` against the running keyward's configuration.
async fn certs(keyward: &Keyward, args: &[&str]) -> String {
    let config = keyward.config.to_str().unwrap().to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        let mut argv = vec!["--config", &config, "certs"];
        argv.extend(args.iter().map(String::as_str));
        run_cli(&argv, SystemTime::now())
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    format!("{out}{err}")
}

/// The serial `issue-client` printed.
fn serial_in(text: &str) -> String {
    text.split("serial ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap()
        .to_owned()
}

/// An order from `token` over a connection presenting `identity` (cert, key), or no
/// certificate. Status 0: the handshake was refused.
async fn order_with(keyward: &Keyward, identity: Option<(&Path, &Path)>, token: &str) -> Response {
    let client = match identity {
        Some((cert, key)) => BotClient::with_identity(
            keyward.running.bot_addr,
            &keyward.running.ca_path,
            cert,
            key,
        ),
        None => BotClient::new(keyward.running.bot_addr, &keyward.running.ca_path),
    };
    let bytes = build(
        "POST",
        "/api/v3/order",
        &bot_headers(keyward.port(), token, true),
        ORDER.as_bytes(),
    );
    match client.try_connect(&[b"http/1.1"]).await {
        Ok(mut stream) => {
            use tokio::io::AsyncWriteExt as _;
            let _ = stream.write_all(&bytes).await;
            keyward_tests::client::read_response(&mut stream).await
        }
        Err(_) => Response {
            status: 0,
            headers: Vec::new(),
            body: String::new(),
            closed: true,
        },
    }
}

/// P0 requiring client certificates from keyward's own CA, bot a bound to its own.
async fn with_client_certificates(mock: &Mock) -> Keyward {
    Keyward::serve(
        FixturePolicy::P0,
        Serving {
            tables: "[tls]\nclient_ca = \"tls/ca.pem\"\n".to_owned(),
            bot_extra: "require_client_cert = true".to_owned(),
            ..Serving::against(mock)
        },
    )
    .await
}

/// The reason of the `count`-th refused handshake (1-based), once keyward has recorded
/// it: the client sees the connection fail before the server's task has written its
/// audit record, so the record is waited for (up to ten seconds), never assumed.
async fn nth_handshake_reason(keyward: &Keyward, count: usize) -> Option<String> {
    for _ in 0..200 {
        let reasons = handshake_reasons(keyward);
        if reasons.len() >= count {
            return reasons.get(count - 1).cloned();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

fn handshake_reasons(keyward: &Keyward) -> Vec<String> {
    keyward
        .audit()
        .iter()
        .filter(|l| l["event"] == "handshake")
        .map(|l| {
            assert_eq!(l["decision"], "deny");
            l["reason"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// A binding holds on WebSockets as on REST: bot a's token in a `session.logon`
/// over a connection presenting bot b's certificate is refused, and the connection
/// stays unbound; with a's own certificate it binds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_logon_needs_the_proof_its_bot_is_bound_to() {
    let mock = Mock::start().await;
    let keyward = with_client_certificates(&mock).await;
    certs(&keyward, &["issue-client", "a"]).await;
    certs(&keyward, &["issue-client", "b"]).await;
    let clients = keyward.dir.path().join("tls").join("clients");
    let logon = |id| keyward_tests::ws_client::binance_logon(id, &keyward.tokens.bot);
    let open = |name: &str| {
        let client = BotClient::with_identity(
            keyward.running.bot_addr,
            &keyward.running.ca_path,
            &clients.join(format!("{name}.pem")),
            &clients.join(format!("{name}.key")),
        );
        keyward_tests::ws_client::WsClient::try_connect_as(
            client,
            keyward.running.bot_addr,
            "/ws-api/v3",
            &[],
        )
    };
    let mut as_b = open("b").await.expect("upgraded");
    let refused = as_b.request(&logon(1)).await;
    assert_eq!(refused["status"], 401, "{refused}");
    assert!(
        refused.to_string().contains("auth_binding_mismatch"),
        "{refused}"
    );
    let mut as_a = open("a").await.expect("upgraded");
    let bound = as_a.request(&logon(2)).await;
    assert_eq!(bound["status"], 200, "{bound}");
    assert!(mock.records().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_bind_bots_and_every_refusal_is_audited() {
    let mock = Mock::start().await;
    let keyward = with_client_certificates(&mock).await;
    let tls_dir = keyward.dir.path().join("tls");
    let bot = keyward.tokens.bot.clone();
    let bot_b = keyward.tokens.bot_b.clone();
    let issued_a = certs(&keyward, &["issue-client", "a"]).await;
    assert!(issued_a.contains("key:"), "{issued_a}");
    let first_a = serial_in(&issued_a);
    // Keep the first certificate of a aside: issuing again writes a.pem anew.
    let kept = TempDir::new("client-a");
    for file in ["a.pem", "a.key"] {
        std::fs::copy(tls_dir.join("clients").join(file), kept.path().join(file)).unwrap();
    }
    let old_a = (kept.path().join("a.pem"), kept.path().join("a.key"));
    certs(&keyward, &["issue-client", "a"]).await;
    certs(&keyward, &["issue-client", "b"]).await;
    let clients = tls_dir.join("clients");
    let (a_cert, a_key) = (clients.join("a.pem"), clients.join("a.key"));
    let (b_cert, b_key) = (clients.join("b.pem"), clients.join("b.key"));
    let a = Some((a_cert.as_path(), a_key.as_path()));

    // The bot's own certificate: through, and recorded.
    let response = order_with(&keyward, a, &bot).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(mock.records().len(), 1);
    let audit = keyward.audit();
    let allowed = audit.iter().rfind(|l| l["event"] == "request").unwrap();
    assert_eq!(allowed["transport"], "mtls");
    assert_eq!(allowed["client_cert"], "a");

    // Another bot's certificate with a's token: the token is valid, the binding not.
    mock.clear();
    let response = order_with(&keyward, Some((&b_cert, &b_key)), &bot).await;
    assert_eq!(response.status, 401, "{}", response.body);
    assert_eq!(
        response.header("x-keyward-error"),
        Some("auth_binding_mismatch")
    );
    assert!(
        response.body.contains("client certificate"),
        "{}",
        response.body
    );
    let audit = keyward.audit();
    let refused = audit.iter().rfind(|l| l["event"] == "request").unwrap();
    assert_eq!(refused["reason"], "auth_binding_mismatch");
    assert_eq!(refused["client_cert"], "b");
    // Bot b is not bound: any certificate from the CA will do for it.
    let headers = bot_headers(keyward.port(), &bot_b, false);
    let b_client = BotClient::with_identity(
        keyward.running.bot_addr,
        &keyward.running.ca_path,
        &b_cert,
        &b_key,
    );
    let read = b_client
        .request("GET", "/api/v3/account", &headers, b"")
        .await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(
        mock.records().len(),
        1,
        "only b's read reached the exchange"
    );

    // Handshakes refused: no certificate, another CA's, an expired one.
    mock.clear();
    let other = TempDir::new("other-ca");
    keyward_certs::init(other.path(), &[], false).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let foreign = keyward_certs::clients::issue_client(
        other.path(),
        "a",
        now - time::Duration::hours(1),
        now + time::Duration::days(1),
        other.path(),
    )
    .unwrap();
    let expired_dir = TempDir::new("expired");
    let expired = keyward_certs::clients::issue_client(
        &tls_dir,
        "a",
        now - time::Duration::days(3),
        now - time::Duration::days(1),
        expired_dir.path(),
    )
    .unwrap();
    for (identity, reason) in [
        (None, "tls_client_cert_missing"),
        (
            Some((foreign.cert.as_path(), foreign.key.as_path())),
            "tls_client_cert_untrusted",
        ),
        (
            Some((expired.cert.as_path(), expired.key.as_path())),
            "tls_client_cert_expired",
        ),
    ] {
        let before = handshake_reasons(&keyward).len();
        let response = order_with(&keyward, identity, &bot).await;
        assert_eq!(response.status, 0, "{reason}: answered {response:?}");
        assert_eq!(
            nth_handshake_reason(&keyward, before + 1).await.as_deref(),
            Some(reason)
        );
    }
    assert!(
        mock.records().is_empty(),
        "a refused handshake sent nothing"
    );

    // Revoke a's first certificate; after the reload it is refused at the handshake
    // and a's newer certificate still works.
    assert_eq!(
        order_with(&keyward, Some((&old_a.0, &old_a.1)), &bot)
            .await
            .status,
        200
    );
    let revoked = certs(&keyward, &["revoke", "a", "--serial", &first_a]).await;
    assert!(revoked.contains(&first_a), "{revoked}");
    let admin = keyward.running.admin_addr.unwrap();
    let reload = keyward_tests::client::admin_request(admin, "POST", "/reload").await;
    assert_eq!(reload.status, 200, "{}", reload.body);
    mock.clear();
    let before = handshake_reasons(&keyward).len();
    let response = order_with(&keyward, Some((&old_a.0, &old_a.1)), &bot).await;
    assert_eq!(response.status, 0, "{response:?}");
    assert_eq!(
        nth_handshake_reason(&keyward, before + 1).await.as_deref(),
        Some("tls_client_cert_revoked")
    );
    assert!(mock.records().is_empty());
    assert_eq!(order_with(&keyward, a, &bot).await.status, 200);

    // `certs list` shows each certificate and its state.
    let listed = certs(&keyward, &["list"]).await;
    assert!(listed.contains(&first_a), "{listed}");
    assert!(listed.contains("revoked"), "{listed}");
    assert_eq!(listed.matches("client ").count(), 4, "{listed}");

    // Metrics count the refusals and show each certificate's expiry.
    let metrics = keyward_tests::client::admin_get(admin, "/metrics")
        .await
        .body;
    for reason in [
        "tls_client_cert_missing",
        "tls_client_cert_untrusted",
        "tls_client_cert_expired",
        "tls_client_cert_revoked",
    ] {
        assert!(
            metrics.contains(&format!(
                "keyward_tls_handshakes_refused_total{{reason=\"{reason}\"}} 1"
            )),
            "{reason}:\n{metrics}"
        );
    }
    assert_eq!(expiring_within_14_days(&metrics), Some(0), "{metrics}");

    // Real clients: curl and Python requests present the certificate.
    let url = format!("https://localhost:{}/api/v3/order", keyward.port());
    let ca = keyward.running.ca_path.clone();
    let curl = {
        let (url, ca, a_cert, a_key, bot) = (
            url.clone(),
            ca.clone(),
            a_cert.clone(),
            a_key.clone(),
            bot.clone(),
        );
        tokio::task::spawn_blocking(move || {
            Command::new("curl")
                .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
                .arg("--cacert")
                .arg(&ca)
                .arg("--cert")
                .arg(&a_cert)
                .arg("--key")
                .arg(&a_key)
                .args(["-H", &format!("X-MBX-APIKEY: {bot}"), "--data", ORDER, &url])
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    };
    assert_eq!(
        String::from_utf8_lossy(&curl.stdout),
        "200",
        "{}",
        String::from_utf8_lossy(&curl.stderr)
    );
    let python = tokio::task::spawn_blocking(python).await.unwrap();
    let script = "import sys, requests\n\
        url, ca, cert, key, token, body = sys.argv[1:]\n\
        r = requests.post(url, data=body, headers={'X-MBX-APIKEY': token, 'Content-Type': 'application/x-www-form-urlencoded'}, cert=(cert, key), verify=ca)\n\
        print(r.status_code)\n";
    let requests = tokio::task::spawn_blocking({
        let (ca, a_cert, a_key, bot) = (ca.clone(), a_cert.clone(), a_key.clone(), bot.clone());
        let python = python.clone();
        move || {
            Command::new(python)
                .args(["-c", script, &url])
                .arg(&ca)
                .arg(&a_cert)
                .arg(&a_key)
                .args([&bot, ORDER])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&requests.stdout).trim(),
        "200",
        "{}",
        String::from_utf8_lossy(&requests.stderr)
    );
    // ccxt and python-binance, set up as docs/bot-identity.md says.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/binance_clients.py");
    let base = format!("https://127.0.0.1:{}", keyward.port());
    let libraries = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .args(["mtls", &base, &bot])
            .arg(&ca)
            .env("REQUESTS_CA_BUNDLE", &ca)
            .env("KEYWARD_CLIENT_CERT", &a_cert)
            .env("KEYWARD_CLIENT_KEY", &a_key)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&libraries.stdout);
    assert!(
        libraries.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&libraries.stderr)
    );
    let result: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(result["ccxt_balances"].as_u64().unwrap() > 0, "{result}");
    assert!(
        result["python_binance_balances"].as_u64().unwrap() > 0,
        "{result}"
    );
    assert!(
        result["ccxt_without_certificate"]["classes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "NetworkError"),
        "{result}"
    );
    keyward.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_server_certificate_reaches_new_connections_and_old_ones_keep_working() {
    let mock = Mock::start().await;
    let keyward = Keyward::serve(
        FixturePolicy::P0,
        Serving {
            server_extra: "watch_interval_ms = 200".to_owned(),
            ..Serving::against(&mock)
        },
    )
    .await;
    let bot = keyward.tokens.bot.clone();
    let request = build(
        "POST",
        "/api/v3/order",
        &bot_headers(keyward.port(), &bot, true),
        ORDER.as_bytes(),
    );
    let mut old = keyward.client.keep_alive().await;
    let before = old.server_certificate();
    assert_eq!(old.send(&request).await.status, 200);

    let renewed = certs(&keyward, &["init", "--renew-server"]).await;
    assert!(
        renewed.contains("issued a new server certificate"),
        "{renewed}"
    );
    // The watcher notices the files and reloads; new connections get the new one.
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let fresh = keyward.client.keep_alive().await.server_certificate();
        if fresh != before {
            break fresh;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!after.is_empty());
    // The connection opened before still works, with the certificate it has.
    let again = old.send(&request).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(old.server_certificate(), before);
    assert_eq!(mock.records().len(), 2);
    keyward.running.shutdown().await;
}

/// A directory for the bot socket that other users can traverse (a test's own
/// temporary directory is private).
fn socket_dir() -> TempDir {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = TempDir::new("socket");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unix_socket_records_peer_credentials_and_binds_a_uid() {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    const NOBODY: u32 = 65_534;
    let mock = Mock::start().await;
    let sockets = socket_dir();
    let socket: PathBuf = sockets.path().join("bot.sock");
    let expires = rfc3339(SystemTime::now() + Duration::from_secs(7 * 86_400));
    let nobody_token = token("nobody", "active");
    let keyward = Keyward::serve(
        FixturePolicy::P0,
        Serving {
            server_extra: format!(
                "listen_unix = \"{}\"\nplain_listen = \"127.0.0.1:0\"",
                socket.display()
            ),
            tables: format!(
                "[bots.nobody]\naccount = \"spot\"\ntokens = [\"{}\"]\nexpires = \"{expires}\"\nallow = [\"read\"]\npeer_uid = {NOBODY}\n",
                digest(&nobody_token)
            ),
            ..Serving::against(&mock)
        },
    )
    .await;
    let metadata = std::fs::metadata(&socket).unwrap();
    assert_eq!(metadata.permissions().mode() & 0o777, 0o660);

    // An unbound bot over the socket: served, with the kernel's word on who it was.
    let order = build(
        "POST",
        "/api/v3/order",
        &bot_headers(keyward.port(), &keyward.tokens.bot, true),
        ORDER.as_bytes(),
    );
    let response = unix_raw(&socket, &order).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let audit = keyward.audit();
    let line = audit.iter().rfind(|l| l["event"] == "request").unwrap();
    assert_eq!(line["transport"], "unix");
    assert_eq!(line["peer_cred"]["uid"], u64::from(metadata.uid()));
    assert_eq!(
        line["peer_cred"]["pid"],
        u64::from(std::process::id()),
        "the peer is this test process"
    );

    // The bot bound to uid 65534, from this process's uid (or over TLS): refused.
    mock.clear();
    let read = build(
        "GET",
        "/api/v3/account",
        &bot_headers(keyward.port(), &nobody_token, false),
        b"",
    );
    if metadata.uid() != NOBODY {
        let refused = unix_raw(&socket, &read).await;
        assert_eq!(refused.status, 401, "{}", refused.body);
        assert_eq!(
            refused.header("x-keyward-error"),
            Some("auth_binding_mismatch")
        );
    }
    let refused = keyward.client.raw(&read).await;
    assert_eq!(
        refused.header("x-keyward-error"),
        Some("auth_binding_mismatch")
    );
    assert!(mock.records().is_empty(), "refused requests sent nothing");

    // From uid 65534 itself (curl run as that user; needs root to switch users).
    if running_as_root() {
        std::os::unix::fs::chown(&socket, None, Some(NOBODY)).unwrap();
        let output = tokio::task::spawn_blocking({
            let (socket, token) = (socket.clone(), nobody_token.clone());
            move || {
                use std::os::unix::process::CommandExt as _;
                Command::new("curl")
                    .uid(NOBODY)
                    .gid(NOBODY)
                    .args([
                        "-sS",
                        "-o",
                        "/dev/null",
                        "-w",
                        "%{http_code}",
                        "--unix-socket",
                    ])
                    .arg(&socket)
                    .args(["-H", &format!("X-MBX-APIKEY: {token}")])
                    .arg("http://localhost/api/v3/account")
                    .output()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            "200",
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let audit = keyward.audit();
        let line = audit.iter().rfind(|l| l["event"] == "request").unwrap();
        assert_eq!(line["bot"], "nobody");
        assert_eq!(line["peer_cred"]["uid"], u64::from(NOBODY));
        assert_eq!(mock.records().len(), 1);
    } else {
        eprintln!("skipped: connecting as uid {NOBODY} needs root");
    }

    // The loopback plain-HTTP listener serves unbound bots too.
    let plain = keyward.running.plain_addr.unwrap();
    let order = build(
        "POST",
        "/api/v3/order",
        &bot_headers(plain.port(), &keyward.tokens.bot, true),
        ORDER.as_bytes(),
    );
    let response = plain_raw(plain, &order).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let audit = keyward.audit();
    let line = audit.iter().rfind(|l| l["event"] == "request").unwrap();
    assert_eq!(line["transport"], "plain");
    keyward.running.shutdown().await;
    assert!(!socket.exists(), "the socket is removed at shutdown");
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_list_and_metrics_warn_of_certificates_expiring_within_two_weeks() {
    let mock = Mock::start().await;
    let keyward = with_client_certificates(&mock).await;
    let admin = keyward.running.admin_addr.unwrap();
    let metric = || async {
        expiring_within_14_days(
            &keyward_tests::client::admin_get(admin, "/metrics")
                .await
                .body,
        )
    };
    assert_eq!(metric().await, Some(0));
    let issued = certs(&keyward, &["issue-client", "a", "--days", "10"]).await;
    let serial = serial_in(&issued);

    let config = keyward.config.to_str().unwrap().to_owned();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        run_cli(&["--config", &config, "check"], SystemTime::now())
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("bound to the client certificate naming a"),
        "{out}"
    );
    assert!(out.contains("client certificates required"), "{out}");
    assert!(
        err.contains(&format!(
            "warning: certificate client:a:{serial} expires at"
        )) && err.contains("in 9 days")
            && err.contains("keyward certs issue-client"),
        "{err}"
    );
    let listed = certs(&keyward, &["list"]).await;
    assert!(
        listed.contains("valid, expires in 9 days (renew)"),
        "{listed}"
    );

    let reload = keyward_tests::client::admin_request(admin, "POST", "/reload").await;
    assert_eq!(reload.status, 200, "{}", reload.body);
    assert_eq!(metric().await, Some(1));
    keyward.running.shutdown().await;
}

/// How many certificates the metrics say expire within 14 days (the alert's rule in
/// deploy/prometheus/alerts.yml); `None` if the server's own is not among them.
fn expiring_within_14_days(metrics: &str) -> Option<usize> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let expiries: Vec<(&str, f64)> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("keyward_certificate_expiry_timestamp_seconds{"))
        .filter_map(|l| {
            let (labels, value) = l.split_once("} ")?;
            Some((labels, value.parse().ok()?))
        })
        .collect();
    expiries
        .iter()
        .any(|(labels, _)| *labels == "certificate=\"server\"")
        .then(|| {
            expiries
                .iter()
                .filter(|(_, at)| at - now < 14.0 * 86_400.0)
                .count()
        })
}
