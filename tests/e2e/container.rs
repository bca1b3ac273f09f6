//! The container image: the runtime stage of deploy/Dockerfile, built with podman
//! around a statically linked keyward, run the way the deploy examples run it
//! (non-root, read-only root filesystem, all capabilities dropped but IPC_LOCK,
//! configuration and vault mounted read-only), serving a bot through to the mock
//! exchange, and stopping cleanly. Skipped, with the reason, where podman cannot run
//! containers.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

use keyward_tests::client::BotClient;
use keyward_tests::launch::write_vault;
use keyward_tests::mock::Mock;
use keyward_tests::{
    FixturePolicy, Serving, TempDir, fixed_now, fixture_tokens, run_cli, write_fixture_serving,
};

/// keyward's user in the image.
const UID: u32 = 65532;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// podman with the settings this machine needs (CONTRIBUTING.md): vfs storage kept
/// under target/, runc, cgroupfs, and no default ulimits.
struct Podman {
    root: PathBuf,
    conf: PathBuf,
}

impl Podman {
    fn new() -> Self {
        let root = workspace().join("target/podman");
        std::fs::create_dir_all(&root).unwrap();
        let conf = root.join("containers.conf");
        std::fs::write(&conf, "[containers]\ndefault_ulimits = []\n").unwrap();
        Self { root, conf }
    }

    /// `podman ARGS`, with this machine's settings.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("podman");
        command
            .env("CONTAINERS_CONF", &self.conf)
            .arg("--root")
            .arg(self.root.join("storage"))
            .arg("--runroot")
            .arg(self.root.join("run"))
            .args([
                "--storage-driver",
                "vfs",
                "--runtime",
                "runc",
                "--cgroup-manager",
                "cgroupfs",
            ])
            .args(args);
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("podman runs")
    }

    /// `podman ARGS` with `input` on its standard input.
    fn ok_with_input(&self, args: &[&str], input: &[u8]) -> String {
        use std::io::Write as _;
        let mut child = self
            .command(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("podman runs");
        child.stdin.take().unwrap().write_all(input).unwrap();
        succeeded(args, &child.wait_with_output().unwrap())
    }

    fn ok(&self, args: &[&str]) -> String {
        succeeded(args, &self.run(args))
    }
}

/// The standard output of a podman command that must have succeeded.
fn succeeded(args: &[&str], output: &Output) -> String {
    assert!(
        output.status.success(),
        "podman {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Why containers cannot be tested here, if they cannot.
fn unavailable(podman: &Podman) -> Option<String> {
    if Command::new("podman").arg("--version").output().is_err() {
        return Some("podman is not installed (apt-get install podman runc)".to_owned());
    }
    if keyward::sys::effective_uid() != 0 {
        return Some(format!(
            "not running as root: the mounted vault must be owned by uid {UID}, which only root can arrange"
        ));
    }
    let info = podman.run(&["info"]);
    if !info.status.success() {
        return Some(format!(
            "podman cannot run here: {}",
            String::from_utf8_lossy(&info.stderr).trim()
        ));
    }
    None
}

/// keyward linked statically (glibc here; the Dockerfile's Alpine stage links musl).
fn static_keyward() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_dir = workspace().join("target/static");
    let status = Command::new(cargo)
        .current_dir(workspace())
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "x86_64-unknown-linux-gnu",
            "-p",
            "keyward",
            "--target-dir",
        ])
        .arg(&target_dir)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "the static build failed");
    target_dir.join("x86_64-unknown-linux-gnu/release/keyward")
}

/// The Dockerfile's runtime stage, with the binary copied from the build context
/// instead of the build stage: the test builds exactly what ships, minus the compile.
fn runtime_stage() -> String {
    let dockerfile = std::fs::read_to_string(workspace().join("deploy/Dockerfile")).unwrap();
    let stage = &dockerfile[dockerfile
        .find("FROM scratch AS runtime")
        .expect("runtime stage")..];
    let from_build = "COPY --from=build /out/keyward /keyward";
    assert!(stage.contains(from_build), "{stage}");
    stage.replace(from_build, "COPY keyward /keyward")
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_serves_a_bot_read_only_and_unprivileged() {
    let podman = Podman::new();
    if let Some(why) = unavailable(&podman) {
        eprintln!("skipped container::the_image_serves_a_bot_read_only_and_unprivileged: {why}");
        return;
    }
    let binary = tokio::task::spawn_blocking(static_keyward).await.unwrap();
    let dir = TempDir::new("image");
    let context = dir.path().join("context");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::copy(&binary, context.join("keyward")).unwrap();
    std::fs::write(context.join("Containerfile"), runtime_stage()).unwrap();
    let image = format!("localhost/keyward-test:{}", std::process::id());
    let containerfile = context.join("Containerfile").display().to_string();
    let context_dir = context.display().to_string();
    podman.ok(&["build", "-t", &image, "-f", &containerfile, &context_dir]);
    let user = podman.ok(&["image", "inspect", "--format", "{{.Config.User}}", &image]);
    assert_eq!(user.trim(), format!("{UID}:{UID}"));
    // keyward listens on loopback only: the image offers no port to publish.
    let exposed = podman.ok(&[
        "image",
        "inspect",
        "--format",
        "{{len .Config.ExposedPorts}}",
        &image,
    ]);
    assert_eq!(exposed.trim(), "0");
    let title = podman.ok(&[
        "image",
        "inspect",
        "--format",
        "{{index .Config.Labels \"org.opencontainers.image.title\"}}",
        &image,
    ]);
    assert_eq!(title.trim(), "keyward");

    // The configuration, vault and the exchange's CA, mounted read-only at
    // /etc/keyward; state (TLS material, audit log) in a writable volume.
    let mock = Mock::start().await;
    let conf = dir.path().join("conf");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    chown(&state, UID);
    std::fs::copy(&mock.ca, conf.join("exchange-ca.pem")).unwrap();
    let tokens = fixture_tokens();
    let serving = Serving {
        listen: Some("127.0.0.1:0".to_owned()),
        upstream: Some((mock.url(), PathBuf::from("/etc/keyward/exchange-ca.pem"))),
        server_extra: "admin = \"127.0.0.1:0\"".to_owned(),
        tables: "[tls]\ndir = \"/var/lib/keyward/tls\"\n\n[audit]\nfile = \"/var/lib/keyward/audit.jsonl\"\n".to_owned(),
        order_rate: None,
        bot_extra: String::new(),
        account_extra: String::new(),
        relative_config: false,
    };
    let written = write_fixture_serving(
        &conf,
        FixturePolicy::P0,
        &tokens,
        SystemTime::now(),
        &serving,
    );
    std::fs::rename(written, conf.join("keyward.toml")).unwrap();
    write_vault(&conf);
    chown(&conf.join("keyward.vault"), UID);
    chown(&conf.join("master.key"), UID);

    let name = format!("keyward-test-{}", std::process::id());
    let conf_mount = format!("{}:/etc/keyward:ro", conf.display());
    let state_mount = format!("{}:/var/lib/keyward", state.display());
    podman.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "host",
        "--read-only",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "IPC_LOCK",
        "--security-opt",
        "no-new-privileges",
        "-v",
        &conf_mount,
        "-v",
        &state_mount,
        &image,
    ]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let bot_addr = loop {
        let logs = podman.run(&["logs", &name]);
        let text = String::from_utf8_lossy(&logs.stderr).into_owned();
        if let Some(line) = text
            .lines()
            .find(|l| l.contains("keyward listening on https://"))
        {
            let start = line.find("https://").unwrap() + "https://".len();
            let end = start + line[start..].find(' ').unwrap();
            break line[start..end].parse::<std::net::SocketAddr>().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the container did not start:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let client = BotClient::new(bot_addr, &state.join("tls/ca.pem"));
    let headers = keyward_tests::client::bot_headers(bot_addr.port(), &tokens.bot, true);
    let response = client
        .request(
            "POST",
            "/api/v3/order",
            &headers,
            b"symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=60000",
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    let records = mock.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].signature_ok, Some(true));
    let withdrawal = client
        .request(
            "POST",
            "/sapi/v1/capital/withdraw/apply",
            &headers,
            b"coin=USDT&address=x&amount=1",
        )
        .await;
    assert_eq!(withdrawal.status, 403);
    assert_eq!(mock.records().len(), 1);

    // It runs as keyward's uid, cannot dump core, and stops cleanly on SIGTERM.
    let top = podman.ok(&["top", &name, "huser", "comm"]);
    assert!(top.contains(&UID.to_string()), "{top}");
    podman.ok(&["stop", "-t", "20", &name]);
    let code = podman.ok(&["inspect", "--format", "{{.State.ExitCode}}", &name]);
    assert_eq!(code.trim(), "0");
    let audit = state.join("audit.jsonl");
    let (code, out, err) = run_cli(&["audit", "verify", audit.to_str().unwrap()], fixed_now());
    assert_eq!(code, 0, "{out}{err}");
    podman.run(&["rm", "-f", &name]);

    // The compose runbook's vault commands: a one-off container of the image, as
    // keyward's uid, with the secrets directory mounted writable at /vault and
    // deploy/compose/vault.toml as its configuration. The rotated vault is renamed
    // into place inside that directory.
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    for file in ["keyward.vault", "master.key"] {
        std::fs::copy(conf.join(file), secrets.join(file)).unwrap();
        chown(&secrets.join(file), UID);
    }
    chown(&secrets, UID);
    let vault_mount = format!("{}:/vault", secrets.display());
    let runbook = workspace().join("deploy/compose/vault.toml");
    let runbook_mount = format!("{}:/etc/keyward/vault.toml:ro", runbook.display());
    let vault = |command: &[&str]| -> Vec<String> {
        [
            "run",
            "--rm",
            "-i",
            "--network",
            "none",
            "--read-only",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "-v",
            &vault_mount,
            "-v",
            &runbook_mount,
            &image,
            "--config",
            "/etc/keyward/vault.toml",
            "vault",
        ]
        .iter()
        .chain(command)
        .map(|s| (*s).to_owned())
        .collect()
    };
    let args = vault(&["list"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let before = podman.ok(&args);
    assert!(before.contains("spot "), "{before}");
    let rotate = vault(&["rotate", "spot"]);
    let rotate: Vec<&str> = rotate.iter().map(String::as_str).collect();
    podman.ok_with_input(
        &rotate,
        br#"{"api_key":"ROTATEDKEYforthecomposerunbook","api_secret":"rotated-secret"}"#,
    );
    let after = podman.ok(&args);
    assert_ne!(before, after);
    let spot = |listing: &str| {
        listing
            .lines()
            .find(|l| l.starts_with("spot "))
            .unwrap()
            .to_owned()
    };
    assert_ne!(spot(&before), spot(&after), "{after}");
    podman.run(&["rmi", "-f", &image]);
}
