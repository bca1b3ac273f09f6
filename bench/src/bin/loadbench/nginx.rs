//! nginx as the benchmark's reference proxy: a TLS 1.3 reverse proxy (same kind of
//! P-256 certificate as keyward's) in front of the benchmark exchange, with upstream
//! keep-alive and certificate verification, no access log, and no per-connection
//! request cap on either side, so that it is measured at its best.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keyward_bench::procfs;

/// A running nginx (master and workers).
#[derive(Debug)]
pub(crate) struct Nginx {
    /// The TLS port bots connect to.
    pub(crate) port: u16,
    /// The CA of its certificate.
    pub(crate) ca: PathBuf,
    /// The master process's id.
    pub(crate) master: u32,
    child: Child,
}

/// Where nginx is, or how to get it.
pub(crate) fn find() -> Result<PathBuf, String> {
    crate::tools::find("nginx", &["/usr/sbin/nginx", "/usr/local/sbin/nginx"]).ok_or_else(|| {
        "nginx is not installed: `apt-get install nginx-light` (Debian) or any nginx 1.18+ \
         with the ssl and upstream keepalive modules"
            .to_owned()
    })
}

impl Nginx {
    /// Starts `nginx` with `workers` worker processes in `dir`, proxying to the
    /// exchange on `upstream_port` whose CA is `upstream_ca`.
    pub(crate) fn start(
        nginx: &Path,
        dir: &Path,
        workers: usize,
        upstream_port: u16,
        upstream_ca: &Path,
    ) -> Self {
        let tls = dir.join("tls");
        keyward_certs::init(&tls, &[], false).expect("nginx certificates");
        let port = crate::free_port();
        let temp = dir.join("temp");
        std::fs::create_dir_all(&temp).expect("nginx temp dir");
        let conf = format!(
            r#"worker_processes {workers};
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
worker_rlimit_nofile 20000;
events {{
    worker_connections 16384;
}}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    upstream exchange {{
        server 127.0.0.1:{upstream_port};
        keepalive 128;
        keepalive_requests 100000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {tls}/server.pem;
        ssl_certificate_key {tls}/server.key;
        ssl_protocols TLSv1.3;
        keepalive_requests 100000000;
        keepalive_timeout 300s;
        # To the exchange, from every location below: HTTP/1.1 over verified TLS.
        proxy_http_version 1.1;
        proxy_ssl_server_name on;
        proxy_ssl_name localhost;
        proxy_ssl_verify on;
        proxy_ssl_trusted_certificate {ca};
        proxy_ssl_session_reuse on;
        proxy_ssl_protocols TLSv1.2 TLSv1.3;
        # The exchange's WebSocket API, relayed as nginx relays any WebSocket: the
        # yardstick for keyward's added latency per order message.
        location /ws-api/v3 {{
            proxy_pass https://exchange;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host localhost;
            proxy_read_timeout 300s;
        }}
        location / {{
            proxy_pass https://exchange;
            proxy_set_header Connection "";
            proxy_set_header Host localhost;
        }}
    }}
}}
"#,
            dir = dir.display(),
            temp = temp.display(),
            tls = tls.display(),
            ca = upstream_ca.display(),
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("nginx.conf");
        let log = std::fs::File::create(dir.join("stderr.log")).expect("nginx log");
        let child = Command::new(nginx)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("nginx log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", nginx.display()));
        let master = child.id();
        let mut nginx = Self {
            port,
            ca: tls.join("ca.pem"),
            master,
            child,
        };
        nginx.wait_until_listening(dir);
        nginx
    }

    fn wait_until_listening(&mut self, dir: &Path) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
                let errors = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
                panic!("nginx exited ({status}):\n{log}\n{errors}");
            }
            assert!(Instant::now() < deadline, "nginx did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Resident memory of the master and its workers, in bytes.
    pub(crate) fn rss(&self) -> u64 {
        procfs::rss_of_tree(self.master)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // QUIT: workers finish and exit with the master, none is left behind.
        let _ = Command::new("kill")
            .arg("-QUIT")
            .arg(self.master.to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
