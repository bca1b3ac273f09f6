//! What the deployment examples in `deploy/` promise, checked on the files as shipped
//! and on keyward itself: the Kubernetes manifest keeps keyward's state on a claim,
//! replaces rather than doubles the pod, sets resources and runs nothing as root, and
//! passes a Kubernetes schema check; the compose file keeps the bot off keyward's uid
//! and outwaits the drain; the replicas' compose file hardens both keywards alike,
//! gives each its own state, and points both at one Redis that fsyncs every write and
//! at a mock exchange whose certificate carries its service name; the image declares
//! no port; the systemd unit waits for keyward's own readiness notification, which a
//! spawned keyward sends only once it serves; and a keyward killed with SIGKILL and
//! started again on the same state directory keeps a freeze, a budget's spend and a
//! Kraken nonce mark.

use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keyward_tests::client::Response;
use keyward_tests::mock::{Mock, Recorded};
use keyward_tests::process::{KeywardProcess, VaultKey};
use keyward_tests::venues::VenueFixture;
use keyward_tests::{FixturePolicy, Serving, TempDir, fixed_now, run_cli};
use serde::Deserialize as _;
use serde_json::Value;

const EXE: &str = env!("CARGO_BIN_EXE_keyward-e2e");
/// keyward's user in the image and the manifests.
const KEYWARD_UID: u64 = 65532;
/// How long keyward lets requests in flight finish after SIGTERM.
const DRAIN_SECONDS: u64 = 10;

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(file)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every document of a YAML file, as JSON values.
fn yaml_documents(path: &Path) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(&read(path))
        .map(|document| Value::deserialize(document).unwrap())
        .collect()
}

fn of_kind<'a>(documents: &'a [Value], kind: &str) -> Vec<&'a Value> {
    documents.iter().filter(|d| d["kind"] == kind).collect()
}

fn array(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

/// Whether `path` is `mount` or lies under it, component by component.
fn under(path: &Path, mount: &str) -> bool {
    path.starts_with(Path::new(mount))
}

/// The Deployment's containers, init containers (keyward among them) first.
fn containers(pod: &Value) -> Vec<&Value> {
    array(&pod["initContainers"])
        .iter()
        .chain(array(&pod["containers"]))
        .collect()
}

fn named<'a>(pod: &'a Value, name: &str) -> &'a Value {
    containers(pod)
        .into_iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container named {name}"))
}

/// The manifest's keyward.toml, parsed.
fn keyward_toml(documents: &[Value]) -> toml::Table {
    let map = of_kind(documents, "ConfigMap");
    let text = map
        .iter()
        .find_map(|m| m["data"]["keyward.toml"].as_str())
        .expect("a ConfigMap with keyward.toml");
    text.parse().unwrap()
}

#[test]
fn the_kubernetes_manifest_keeps_state_and_runs_nothing_as_root() {
    let path = deploy("k8s/keyward-sidecar.yaml");
    let documents = yaml_documents(&path);
    let config = keyward_toml(&documents);
    let deployments = of_kind(&documents, "Deployment");
    assert_eq!(deployments.len(), 1);
    let deployment = deployments[0];
    // Two pods on one exchange key would each keep their own budgets and open-order
    // counts: the old pod must be gone before the new one starts.
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
    assert_eq!(deployment["spec"]["replicas"], 1);
    let template = &deployment["spec"]["template"];
    let pod = &template["spec"];
    let keyward = named(pod, "keyward");
    assert_eq!(
        keyward["restartPolicy"], "Always",
        "keyward is a native sidecar"
    );

    // The state directory and the audit log's directory (budgets and the order record
    // are rebuilt from the log) are on the PersistentVolumeClaim this file declares.
    let state_dir = PathBuf::from(config["server"]["state_dir"].as_str().unwrap());
    let audit_file = PathBuf::from(config["audit"]["file"].as_str().unwrap());
    // The claim holds a bounded history: files bounded in size and deleted by age.
    assert!(config["audit"]["max_file_bytes"].as_integer().is_some());
    assert!(
        config["audit"]["retention"].as_str().is_some(),
        "{config:?}"
    );
    let audit_dir = audit_file.parent().unwrap();
    let claims: Vec<&str> = of_kind(&documents, "PersistentVolumeClaim")
        .iter()
        .filter_map(|c| c["metadata"]["name"].as_str())
        .collect();
    let volumes: BTreeMap<&str, &Value> = array(&pod["volumes"])
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v))
        .collect();
    for wanted in [state_dir.as_path(), audit_dir] {
        let mount = array(&keyward["volumeMounts"])
            .iter()
            .filter(|m| under(wanted, m["mountPath"].as_str().unwrap()))
            .max_by_key(|m| m["mountPath"].as_str().unwrap().len())
            .unwrap_or_else(|| panic!("nothing mounted at {}", wanted.display()));
        assert_ne!(mount["readOnly"], true, "{}", wanted.display());
        let volume = volumes[mount["name"].as_str().unwrap()];
        let claim = volume["persistentVolumeClaim"]["claimName"]
            .as_str()
            .unwrap_or_else(|| panic!("{} is not on a claim: {volume}", wanted.display()));
        assert!(claims.contains(&claim), "{claim} is declared: {claims:?}");
    }
    // What remains in memory or on the node's disk is bounded.
    for volume in volumes.values() {
        if let Some(empty) = volume.get("emptyDir") {
            assert!(empty["sizeLimit"].is_string(), "{volume}");
        }
    }

    // Resources, and no root, in every container; nothing gains privileges.
    let security = &pod["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_ne!(security["runAsUser"], 0);
    for container in containers(pod) {
        let name = &container["name"];
        let resources = &container["resources"];
        for field in ["requests", "limits"] {
            for what in ["cpu", "memory"] {
                assert!(
                    resources[field][what].is_string(),
                    "{name}: resources.{field}.{what}"
                );
            }
        }
        let context = &container["securityContext"];
        let uid = context["runAsUser"].as_u64().unwrap();
        assert_ne!(uid, 0, "{name}");
        assert_ne!(context["runAsGroup"].as_u64(), Some(0), "{name}");
        assert_eq!(context["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(context["readOnlyRootFilesystem"], true, "{name}");
        assert_ne!(context["privileged"], true, "{name}");
        assert_eq!(context["capabilities"]["drop"][0], "ALL", "{name}");
    }
    // The bot is not keyward's user and sees neither the secrets nor the state.
    let bot = named(pod, "bot");
    assert_ne!(bot["securityContext"]["runAsUser"], KEYWARD_UID);
    for mount in array(&bot["volumeMounts"]) {
        let volume = volumes[mount["name"].as_str().unwrap()];
        assert!(
            volume.get("persistentVolumeClaim").is_none()
                && volume["secret"]["secretName"] != "keyward-secrets"
                && mount["name"] != "keyward-secrets",
            "the bot mounts {volume}"
        );
    }

    // Metrics: the scrape annotations name the metrics-only listener, on the pod IP
    // and declared as the keyward container's only port; the admin listener (which
    // also reloads and freezes) stays on loopback and undeclared.
    let admin = config["server"]["admin"].as_str().unwrap();
    let admin: std::net::SocketAddr = admin.parse().unwrap();
    assert!(admin.ip().is_loopback(), "the admin listener left loopback");
    let metrics: std::net::SocketAddr = config["server"]["metrics_listen"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(!metrics.ip().is_loopback(), "{metrics}");
    let ports: Vec<u64> = array(&keyward["ports"])
        .iter()
        .filter_map(|p| p["containerPort"].as_u64())
        .collect();
    assert_eq!(ports, [u64::from(metrics.port())]);
    let annotations = &template["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(
        annotations["prometheus.io/port"].as_str(),
        Some(metrics.port().to_string().as_str())
    );
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    // The probes ask the admin listener the configuration names.
    let probe = keyward["readinessProbe"]["exec"]["command"].to_string();
    assert!(probe.contains(&format!("http://{admin}/readyz")), "{probe}");

    // The NetworkPolicy covers the pod: ingress only to the metrics port, egress only
    // to DNS and HTTPS.
    let policies = of_kind(&documents, "NetworkPolicy");
    assert_eq!(policies.len(), 1);
    let policy = &policies[0]["spec"];
    assert_eq!(
        policy["podSelector"]["matchLabels"],
        template["metadata"]["labels"]
    );
    assert_eq!(
        policy["policyTypes"],
        serde_json::json!(["Ingress", "Egress"])
    );
    let ingress_ports: Vec<u64> = array(&policy["ingress"])
        .iter()
        .flat_map(|rule| array(&rule["ports"]))
        .filter_map(|p| p["port"].as_u64())
        .collect();
    assert_eq!(ingress_ports, [u64::from(metrics.port())], "{policy}");
    let mut egress_ports: Vec<u64> = array(&policy["egress"])
        .iter()
        .flat_map(|rule| array(&rule["ports"]))
        .filter_map(|p| p["port"].as_u64())
        .collect();
    egress_ports.sort_unstable();
    egress_ports.dedup();
    assert_eq!(egress_ports, [53, 443]);
}

/// `kubernetes-validate` (PyPI, with the Kubernetes schemas inside the package),
/// installed into the test virtualenv from tests/clients/requirements.txt.
#[test]
fn the_kubernetes_manifest_passes_the_schema_check() {
    let python = match std::env::var_os("KEYWARD_PYTHON") {
        Some(python) => PathBuf::from(python),
        None => keyward_tests::python::python(),
    };
    let installed = Command::new(&python)
        .args(["-c", "import kubernetes_validate"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        eprintln!(
            "skipped deploy::the_kubernetes_manifest_passes_the_schema_check: {} has no \
             kubernetes_validate (pip install -r tests/clients/requirements.txt)",
            python.display()
        );
        return;
    }
    let output = Command::new(&python)
        .args(["-m", "kubernetes_validate", "--strict"])
        .arg(deploy("k8s/keyward-sidecar.yaml"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    for kind in [
        "configmap",
        "persistentvolumeclaim",
        "deployment",
        "networkpolicy",
    ] {
        assert!(
            text.contains(&format!("passed for resource {kind}/")),
            "{text}"
        );
    }
}

/// A compose duration such as `20s` or `1m30s`, in seconds.
fn compose_seconds(text: &str) -> u64 {
    let mut total = 0;
    let mut digits = String::new();
    for c in text.chars() {
        match c {
            '0'..='9' => digits.push(c),
            'h' | 'm' | 's' => {
                let n: u64 = digits.parse().unwrap();
                total += n * match c {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                };
                digits.clear();
            }
            other => panic!("unexpected {other} in {text}"),
        }
    }
    assert!(digits.is_empty(), "{text}");
    total
}

#[test]
fn the_compose_bot_is_not_keywards_user_and_the_drain_fits_the_grace_period() {
    let documents = yaml_documents(&deploy("compose/compose.yaml"));
    let services = &documents[0]["services"];
    let keyward = &services["keyward"];
    let bot = &services["bot"];
    let uid = |service: &Value| -> u64 {
        let user = service["user"].as_str().expect("an explicit user");
        user.split(':').next().unwrap().parse().unwrap()
    };
    assert_eq!(uid(keyward), KEYWARD_UID);
    // The bot shares the state volume (for ca.pem) and the network namespace; under
    // keyward's uid it could read the CA key and use the control socket.
    assert_ne!(uid(bot), KEYWARD_UID);
    assert_ne!(uid(bot), 0);
    let grace = compose_seconds(keyward["stop_grace_period"].as_str().unwrap());
    assert!(grace > DRAIN_SECONDS, "{grace}");
    for service in [keyward, bot] {
        assert_eq!(service["read_only"], true);
        assert_eq!(service["cap_drop"][0], "ALL");
    }
    for mount in array(&bot["volumes"]) {
        let mount = mount.as_str().unwrap();
        assert!(
            !mount.contains("secrets:") && !mount.contains("keyward.vault"),
            "{mount}"
        );
    }
    // `vault rotate` renames a new vault over the old one, which a mount of the single
    // file would hide from the running keyward: the secrets come as a directory.
    for mount in array(&keyward["volumes"]) {
        let source = mount.as_str().unwrap().split(':').next().unwrap();
        assert!(
            !source.ends_with(".vault") && !source.ends_with(".key"),
            "{source}"
        );
    }
    let runbook: toml::Table = read(&deploy("compose/vault.toml")).parse().unwrap();
    for setting in ["file", "key"] {
        let value = runbook["vault"][setting].as_str().unwrap();
        assert!(
            value.trim_start_matches("file:").starts_with("/vault/"),
            "{value}"
        );
    }
}

/// A compose file as compose reads it: its merge keys (`<<: *keyward`) applied.
fn compose_merged(file: &str) -> Value {
    let mut yaml: serde_yaml::Value = serde_yaml::from_str(&read(&deploy(file))).unwrap();
    yaml.apply_merge().unwrap();
    serde_json::to_value(yaml).unwrap()
}

/// A service's short-syntax mounts: source, target, read-only.
fn mounts(service: &Value) -> Vec<(&str, &str, bool)> {
    array(&service["volumes"])
        .iter()
        .map(|mount| {
            let mut parts = mount.as_str().unwrap().split(':');
            let source = parts.next().unwrap();
            let target = parts.next().unwrap_or_else(|| panic!("{mount}"));
            (source, target, parts.next() == Some("ro"))
        })
        .collect()
}

/// The mount of `service` that `path` lies on (the deepest that holds it).
fn mount_of<'a>(service: &'a Value, path: &Path) -> (&'a str, &'a str, bool) {
    mounts(service)
        .into_iter()
        .filter(|(_, target, _)| under(path, target))
        .max_by_key(|(_, target, _)| target.len())
        .unwrap_or_else(|| panic!("nothing mounted at {}", path.display()))
}

/// A service's command as words, an `sh -c` script's included.
fn command_words(service: &Value) -> Vec<String> {
    array(&service["command"])
        .iter()
        .flat_map(|part| part.as_str().unwrap().split_whitespace())
        .map(str::to_owned)
        .collect()
}

/// The value after each `flag` in `words`.
fn flag_values<'a>(words: &'a [String], flag: &str) -> Vec<&'a str> {
    words
        .windows(2)
        .filter(|pair| pair[0] == flag)
        .map(|pair| pair[1].as_str())
        .collect()
}

/// The replicas example: its compose file as compose reads it, and the configuration
/// both replicas load, with the paths the containers see.
struct ReplicasExample {
    compose: Value,
    config: keyward::config::Config,
}

impl ReplicasExample {
    fn load() -> Self {
        let config =
            keyward::config::Config::load(&deploy("compose-replicas/keyward.toml"), fixed_now())
                .unwrap_or_else(|diagnostics| panic!("{:?}", diagnostics.items()));
        Self {
            compose: compose_merged("compose-replicas/compose.yaml"),
            config,
        }
    }

    fn service(&self, name: &str) -> &Value {
        &self.compose["services"][name]
    }

    /// The services running keyward's image, by name.
    fn replicas(&self) -> Vec<(&str, &Value)> {
        let image = &single_keyward()["image"];
        self.services()
            .filter(|(_, service)| service["image"] == *image)
            .collect()
    }

    fn services(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.compose["services"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(name, service)| (name.as_str(), service))
    }

    fn is_named_volume(&self, source: &str) -> bool {
        self.compose["volumes"].get(source).is_some()
    }
}

/// The keyward service of the single-replica compose file.
fn single_keyward() -> Value {
    yaml_documents(&deploy("compose/compose.yaml"))[0]["services"]["keyward"].clone()
}

#[test]
fn the_replicas_are_hardened_like_one_keyward_and_each_keeps_its_own_state() {
    let example = ReplicasExample::load();
    let replicas = example.replicas();
    assert_eq!(replicas.len(), 2, "{replicas:?}");
    let single = single_keyward();
    for (name, replica) in &replicas {
        for setting in [
            "build",
            "user",
            "read_only",
            "cap_drop",
            "cap_add",
            "security_opt",
            "ulimits",
            "healthcheck",
            "stop_grace_period",
        ] {
            assert_eq!(replica[setting], single[setting], "{name}: {setting}");
        }
        assert!(
            mounts(replica).contains(&("./keyward.toml", "/etc/keyward/keyward.toml", true)),
            "{name} reads the shared keyward.toml"
        );
    }

    // TLS material, audit log and control socket on a named volume that no other
    // service mounts: two keywards on one volume would rotate each other's audit log.
    let config = &example.config;
    let audit_dir = config.audit.file.parent().unwrap();
    for (name, replica) in &replicas {
        let (volume, _, read_only) = mount_of(replica, &config.state_dir);
        assert!(example.is_named_volume(volume), "{name}: {volume}");
        assert!(!read_only, "{name}");
        for path in [config.tls.dir.as_path(), audit_dir] {
            let on = mount_of(replica, path).0;
            assert_eq!(on, volume, "{name}: {}", path.display());
        }
        let holders: Vec<&str> = example
            .services()
            .filter(|(_, service)| mounts(service).iter().any(|m| m.0 == volume))
            .map(|(holder, _)| holder)
            .collect();
        assert_eq!(holders, [*name], "{volume}");
    }
}

#[test]
fn the_replicas_share_one_redis_that_fsyncs_every_write() {
    let example = ReplicasExample::load();
    let replicas = example.replicas();
    let keyward::config::StateBackend::Redis(redis) = &example.config.state else {
        panic!("a Redis backend: {:?}", example.config.state);
    };
    // The backend's host is the one service running the official Redis 7 image.
    let authority = redis.url.strip_prefix("redis://").unwrap();
    let authority = authority.split('/').next().unwrap();
    let (host, port) = authority.rsplit_once(':').unwrap();
    let official: Vec<&str> = example
        .services()
        .filter(|(_, service)| {
            let image = service["image"].as_str().unwrap_or_default();
            image.split('@').next() == Some("docker.io/library/redis:7")
        })
        .map(|(name, _)| name)
        .collect();
    assert_eq!(official, [host]);
    let server = example.service(host);
    let words = command_words(server);
    let listens_on = flag_values(&words, "--port").first().copied();
    assert_eq!(listens_on.unwrap_or("6379"), port);

    // Both replicas wait for it and read its password from the same read-only file.
    let password = redis.password_file.as_deref().expect("a password_file");
    let sources: Vec<&str> = replicas
        .iter()
        .map(|(name, replica)| {
            assert!(replica["depends_on"][host].is_object(), "{name}");
            let (source, _, read_only) = mount_of(replica, password);
            assert!(read_only, "{name}: {source}");
            source
        })
        .collect();
    assert_eq!(sources[0], sources[1]);

    // A write is acknowledged once it is on disk, on a named volume.
    for setting in [["--appendonly", "yes"], ["--appendfsync", "always"]] {
        assert!(
            words.windows(2).any(|w| w == setting),
            "{setting:?} in {words:?}"
        );
    }
    let data = mounts(server);
    assert!(
        data.iter()
            .any(|(source, _, read_only)| example.is_named_volume(source) && !read_only),
        "{data:?}"
    );
    assert!(server["healthcheck"]["test"].is_array());

    // The password comes from a secret file, never inline, for keyward's user alone,
    // confined to keyward's namespace.
    let secret = server["secrets"][0].as_str().unwrap();
    assert!(
        example.compose["secrets"][secret]["file"].is_string(),
        "{secret}"
    );
    assert!(
        words
            .iter()
            .any(|w| w.contains(&format!("/run/secrets/{secret}")))
    );
    assert!(
        !words.iter().any(|w| w.contains("requirepass")),
        "{words:?}"
    );
    let user = redis.username.as_deref().expect("an ACL user");
    for rule in [["user", "default", "off"], ["user", user, "on"]] {
        assert!(words.windows(3).any(|w| w == rule), "{rule:?} in {words:?}");
    }
    let namespace = &redis.namespace;
    for pattern in [format!("~{namespace}:*"), format!("&{namespace}:*")] {
        assert!(words.contains(&pattern), "{pattern} in {words:?}");
    }
}

/// The one account goes to the mock exchange by its service name, which the mock's
/// certificate carries, and trusts the CA the mock writes where both replicas read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replicas_reach_the_mock_exchange_by_its_service_name() {
    let example = ReplicasExample::load();
    let accounts = &example.config.accounts;
    assert_eq!(accounts.len(), 1);
    let account = accounts.values().next().unwrap();
    let host = account.upstream.host().unwrap();
    let mock = example.service(host);
    let words = command_words(mock);
    let names: Vec<String> = flag_values(&words, "--name")
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert!(names.iter().any(|n| n == host), "{words:?}");
    let ca_out = Path::new(flag_values(&words, "--ca-out")[0]);
    let (ca_source, _, _) = mount_of(mock, ca_out);
    let upstream_ca = account.upstream_ca.as_deref().expect("the mock's CA");
    assert_eq!(upstream_ca.file_name(), ca_out.file_name());
    for (name, replica) in example.replicas() {
        assert_eq!(mount_of(replica, upstream_ca).0, ca_source, "{name}");
    }

    // A mock given those names is trusted under each, and under no other.
    let mock = Mock::bind("127.0.0.1:0", &names).await.unwrap();
    let connector =
        tokio_rustls::TlsConnector::from(keyward_certs::client_config(Some(&mock.ca)).unwrap());
    let tried = names.iter().map(|n| (n.as_str(), true));
    for (name, trusted) in tried.chain([("elsewhere.example", false)]) {
        let tcp = tokio::net::TcpStream::connect(mock.addr).await.unwrap();
        let server = rustls_pki_types::ServerName::try_from(name.to_owned()).unwrap();
        let handshake = connector.connect(server, tcp).await;
        assert_eq!(handshake.is_ok(), trusted, "{name}: {:?}", handshake.err());
    }
}

#[test]
fn the_image_exposes_no_port_and_its_context_leaves_build_output_out() {
    let dockerfile = read(&deploy("Dockerfile"));
    let instructions: Vec<&str> = dockerfile
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    assert!(
        !instructions.iter().any(|l| l.starts_with("EXPOSE")),
        "keyward listens on loopback only"
    );
    let runtime = &dockerfile[dockerfile.find("FROM scratch AS runtime").unwrap()..];
    for label in ["title", "description", "licenses", "version", "revision"] {
        assert!(
            runtime.contains(&format!("org.opencontainers.image.{label}=")),
            "{label}"
        );
    }
    assert!(dockerfile.contains("--mount=type=cache,target=/src/target"));
    let ignore = read(&deploy("../.dockerignore"));
    let ignored: Vec<&str> = ignore
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    for wanted in [".git", "**/target"] {
        assert!(ignored.contains(&wanted), "{wanted} in .dockerignore");
    }
    // What the build compiles stays in the context.
    for needed in [
        "proxy",
        "policy",
        "venues",
        "certs",
        "tests",
        "bench",
        "Cargo.lock",
    ] {
        assert!(!ignored.contains(&needed), "{needed} is ignored");
    }
}

/// The `[Service]` settings of the systemd unit, by name (the last of a repeated one).
fn unit_settings() -> BTreeMap<String, Vec<String>> {
    let mut settings: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in read(&deploy("systemd/keyward.service")).lines() {
        if let Some((key, value)) = line.split_once('=')
            && !line.starts_with('#')
        {
            settings
                .entry(key.trim().to_owned())
                .or_default()
                .push(value.trim().to_owned());
        }
    }
    settings
}

#[test]
fn the_systemd_unit_waits_for_keywards_notification_and_names_real_documentation() {
    let settings = unit_settings();
    assert_eq!(settings["Type"], ["notify"]);
    let documentation: Vec<&str> = settings["Documentation"]
        .iter()
        .flat_map(|v| v.split_whitespace())
        .collect();
    assert!(
        documentation.contains(&"man:keyward(1)"),
        "{documentation:?}"
    );
    // Every page named is one that `keyward man --dir` writes or one in docs/.
    for page in &documentation {
        if let Some(name) = page.strip_prefix("man:") {
            let command = name.strip_suffix("(1)").unwrap();
            let subcommand = command.strip_prefix("keyward-").unwrap_or("");
            if !subcommand.is_empty() {
                let (code, out, err) = run_cli(&[subcommand, "--help"], fixed_now());
                assert_eq!(code, 0, "{page}: {out}{err}");
            }
        } else {
            let file = page
                .strip_prefix("file:/usr/local/share/doc/keyward/")
                .unwrap_or_else(|| panic!("{page}"));
            assert!(deploy("../docs").join(file).is_file(), "{page}");
        }
    }
    let stop = settings["TimeoutStopSec"][0].strip_suffix('s').unwrap();
    assert!(stop.parse::<u64>().unwrap() > DRAIN_SECONDS);
}

/// Waits for the next notification on `socket`.
fn next_notification(socket: &UnixDatagram) -> String {
    let mut buffer = [0u8; 512];
    let n = socket
        .recv(&mut buffer)
        .expect("a notification within the timeout");
    String::from_utf8(buffer[..n].to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_tells_systemd_it_is_ready_only_once_it_serves() {
    let mock = Mock::start().await;
    let dir = TempDir::new("notify");
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let notify = path.to_str().unwrap().to_owned();
    let serving = Serving::against(&mock);
    let mut keyward = tokio::task::spawn_blocking(move || {
        KeywardProcess::spawn_serving(
            Path::new(EXE),
            FixturePolicy::P0,
            serving,
            VaultKey::File,
            &[("NOTIFY_SOCKET", &notify)],
        )
    })
    .await
    .unwrap();
    let ready = next_notification(&socket);
    assert_eq!(ready, "READY=1\nSTATUS=serving");
    // Ready means ready: the admin listener answers /readyz and a bot is served.
    assert_eq!(keyward.admin("GET", "/readyz").0, 200);
    let order = keyward
        .post_as_bot(
            "/api/v3/order",
            "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=60000",
        )
        .await;
    assert_eq!(order.status, 200, "{}", order.body);

    // A reload is bracketed, with the monotonic time systemd compares.
    let before = keyward::sys::monotonic_micros();
    keyward.signal("HUP");
    let reloading = next_notification(&socket);
    let after = keyward::sys::monotonic_micros();
    let stamp: u64 = reloading
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .unwrap_or_else(|| panic!("{reloading:?}"))
        .parse()
        .unwrap();
    assert!(
        (before..=after).contains(&stamp),
        "{before} {stamp} {after}"
    );
    assert_eq!(next_notification(&socket), "READY=1\nSTATUS=serving");
    assert!(keyward.log().contains("configuration and vault reloaded"));

    keyward.signal("TERM");
    assert_eq!(
        next_notification(&socket),
        "STOPPING=1\nSTATUS=finishing requests in flight"
    );
    let status = keyward.wait(Duration::from_secs(30)).expect("it exits");
    assert!(status.success(), "{status}");
}

/// A Kraken request by the fixture's bot `a` (or `b`).
async fn kraken(keyward: &KeywardProcess, bot_b: bool, method: &str, body: &str) -> Response {
    let token = if bot_b {
        &keyward.tokens.bot_b
    } else {
        &keyward.tokens.bot
    };
    keyward_tests::venues::kraken::private(
        &keyward.client,
        keyward.bot_addr.port(),
        Some(token),
        method,
        "application/x-www-form-urlencoded",
        body,
    )
    .await
}

fn orders(mock: &Mock) -> Vec<Recorded> {
    mock.records()
        .into_iter()
        .filter(|r| r.path == "/0/private/AddOrder")
        .collect()
}

fn nonces(records: &[Recorded]) -> Vec<u64> {
    records
        .iter()
        .filter_map(|r| r.params().get("nonce").and_then(|n| n.parse().ok()))
        .collect()
}

fn now_micros() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    u64::try_from(since.as_micros()).unwrap()
}

/// The re-created pod of the Kubernetes example, or a container restarted on its
/// volume: the same configuration and state directory, the process before it killed
/// with SIGKILL (no `stop` record, nothing flushed on the way out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freeze_a_spent_budget_and_the_kraken_nonce_mark_survive_sigkill() {
    const ORDER: &str = "ordertype=limit&type=buy&volume=0.001&pair=XBTUSD&price=60000";
    let mock = Mock::start().await;
    let serving = Serving {
        bot_extra: "daily_notional = \"150\"".to_owned(),
        ..Serving::against(&mock)
    };
    let keyward = tokio::task::spawn_blocking(move || {
        KeywardProcess::spawn_serving(
            Path::new(EXE),
            FixturePolicy::Venue(VenueFixture::Kraken),
            serving,
            VaultKey::File,
            &[],
        )
    })
    .await
    .unwrap();
    // Two orders of 60 spend 120 of the 150; a third does not fit and is never sent.
    for _ in 0..2 {
        let placed = kraken(&keyward, false, "AddOrder", ORDER).await;
        assert_eq!(placed.header("x-keyward-error"), None, "{}", placed.body);
        assert!(placed.body.contains("\"txid\""), "{}", placed.body);
    }
    let over = kraken(&keyward, false, "AddOrder", ORDER).await;
    assert_eq!(
        over.header("x-keyward-error"),
        Some("daily_notional_exceeded")
    );
    assert_eq!(orders(&mock).len(), 2);

    // The freeze, asked of the running keyward through its control socket.
    let config = keyward.config.to_str().unwrap().to_owned();
    let cli = |command: &'static str| {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            run_cli(
                &["--config", &config, command, "--account", "kraken"],
                fixed_now(),
            )
        })
    };
    let (code, out, err) = cli("freeze").await.unwrap();
    assert_eq!(code, 0, "{out}{err}");
    let frozen = kraken(&keyward, true, "AddOrder", ORDER).await;
    assert_eq!(frozen.header("x-keyward-error"), Some("frozen"));

    // The nonce mark is on disk, ahead of every nonce handed out, before the kill.
    let mark_file = keyward.path().join("keyward-nonce-kraken");
    let mark: u64 = read(&mark_file).trim().parse().unwrap();
    let sent_before = mock.records();
    let highest_before = nonces(&sent_before).into_iter().max().unwrap();
    assert!(mark > highest_before, "{mark} {highest_before}");

    let keyward = tokio::task::spawn_blocking(move || keyward.kill_and_restart())
        .await
        .unwrap();
    let seen = sent_before.len();
    let since_restart = |mock: &Mock| mock.records().split_off(seen);

    // Still frozen: bot `b`, which has no budget, is refused too and nothing is sent.
    for bot_b in [false, true] {
        let refused = kraken(&keyward, bot_b, "AddOrder", ORDER).await;
        assert_eq!(refused.header("x-keyward-error"), Some("frozen"));
    }
    assert!(orders(&mock).len() == 2, "{:?}", since_restart(&mock));
    let (code, out, err) = cli("unfreeze").await.unwrap();
    assert_eq!(code, 0, "{out}{err}");

    // Still spent: the budget was rebuilt from the audit log, so bot `a`'s next order
    // is refused at 120 and never sent, while bot `b`'s goes out.
    let refused = kraken(&keyward, false, "AddOrder", ORDER).await;
    assert_eq!(
        refused.header("x-keyward-error"),
        Some("daily_notional_exceeded"),
        "{}",
        refused.body
    );
    assert!(refused.body.contains("120"), "{}", refused.body);
    assert_eq!(orders(&mock).len(), 2);
    let placed = kraken(&keyward, true, "AddOrder", ORDER).await;
    assert_eq!(placed.header("x-keyward-error"), None, "{}", placed.body);
    let clock_after = now_micros();
    assert_eq!(orders(&mock).len(), 3);

    // Still marked: the first nonce signed after the restart continues from the mark,
    // not from the clock, as long as the clock has not yet passed the mark.
    let after = nonces(&since_restart(&mock));
    let first_after = after.iter().copied().min().expect("a signed request");
    assert!(first_after > mark, "{first_after} after the mark {mark}");
    if clock_after < mark {
        assert_eq!(first_after, mark + 1);
    }
    assert!(after.iter().all(|n| *n > highest_before));
    let records = mock.records();
    assert!(
        records.iter().all(|r| r.signature_ok != Some(false)),
        "{records:?}"
    );
}

/// The systemd runbook manages the vault in a transient unit (`systemd-run
/// --unit=keyward-vault -p LoadCredential=...`) with `deploy/systemd/vault.toml`:
/// the master key is then root-owned, readable through an ACL (which shows in the
/// group bits) and inside `$CREDENTIALS_DIRECTORY`, the one place keyward accepts
/// such a file. Elsewhere, or without that variable, the same file is refused.
#[test]
fn vault_commands_accept_a_systemd_credential_only_in_its_directory() {
    if keyward::sys::effective_uid() != 0 {
        eprintln!(
            "skipped deploy::vault_commands_accept_a_systemd_credential_only_in_its_directory: \
             a credential is root-owned, which only root can arrange"
        );
        return;
    }
    let dir = TempDir::new("credential");
    let shipped: toml::Table = read(&deploy("systemd/vault.toml")).parse().unwrap();
    let vault = shipped["vault"].as_table().unwrap();
    assert_eq!(
        vault.len(),
        2,
        "vault.toml names the vault and its key only"
    );
    let key = vault["key"].as_str().unwrap();
    let credential = key
        .strip_prefix("file:/run/credentials/keyward-vault.service/")
        .expect("the credential of the unit the runbook names");
    // The same layout under the test's directory.
    let credentials = dir.path().join("credentials/keyward-vault.service");
    std::fs::create_dir_all(&credentials).unwrap();
    keyward_tests::launch::write_vault(dir.path());
    let key_file = credentials.join(credential);
    std::fs::rename(dir.path().join("master.key"), &key_file).unwrap();
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o440),
    )
    .unwrap();
    let config = dir.path().join("vault.toml");
    let write_config = |key_file: &Path| {
        std::fs::write(
            &config,
            format!(
                "[vault]\nfile = \"{}\"\nkey = \"file:{}\"\n",
                dir.path().join("keyward.vault").display(),
                key_file.display()
            ),
        )
        .unwrap();
    };
    let list = |credentials: Option<&Path>| {
        let mut command = Command::new(EXE);
        command.arg("--config").arg(&config).args(["vault", "list"]);
        command.env_remove("CREDENTIALS_DIRECTORY");
        if let Some(credentials) = credentials {
            command.env("CREDENTIALS_DIRECTORY", credentials);
        }
        let output = command.output().unwrap();
        (
            output.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    };
    write_config(&key_file);
    let (code, out) = list(Some(&credentials));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("spot "), "{out}");
    // Outside systemd the file is an ordinary group-readable key file.
    let (code, out) = list(None);
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("chmod"), "{out}");
    // The same file beside the credentials directory is no credential.
    let outside = dir.path().join("master.key");
    std::fs::copy(&key_file, &outside).unwrap();
    write_config(&outside);
    let (code, out) = list(Some(&credentials));
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("chmod"), "{out}");
}
