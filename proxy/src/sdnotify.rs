//! Telling systemd how the service stands (the `sd_notify` protocol), without
//! libsystemd: one datagram per change of state to the Unix socket systemd names in
//! `NOTIFY_SOCKET` for a `Type=notify` unit. `serve` sends `READY=1` once every
//! listener accepts and `/readyz` answers 200, `RELOADING=1` and then `READY=1`
//! around each reload, and `STOPPING=1` when the drain begins, so that
//! `systemctl start` returns only when bots can be served and units ordered after
//! keyward start only then.
//!
//! Outside systemd there is no `NOTIFY_SOCKET` and every call does nothing. A
//! notification that cannot be sent is logged and otherwise ignored: keyward serves
//! all the same, and systemd, never told, reports the start as timed out.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;

/// The variable systemd sets to the socket it listens on.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// keyward serves: every listener is bound and accepting.
pub fn ready() {
    notify("READY=1\nSTATUS=serving");
}

/// A reload, told to systemd while it lasts: `RELOADING=1` when it begins and
/// `READY=1` when this is dropped, whether the reload took or the old configuration
/// stayed. Before keyward has said it is ready (a file change seen while starting)
/// systemd is told nothing.
#[derive(Debug)]
pub struct Reload {
    told: bool,
}

impl Reload {
    /// A reload begins; `serving` is whether keyward has reported ready already.
    /// systemd (253 and later, for `Type=notify-reload`) wants the monotonic time
    /// beside `RELOADING=1`, to tell this reload from an earlier one.
    pub fn begin(serving: bool) -> Self {
        if serving {
            notify(&format!(
                "RELOADING=1\nMONOTONIC_USEC={}",
                crate::sys::monotonic_micros()
            ));
        }
        Self { told: serving }
    }
}

impl Drop for Reload {
    fn drop(&mut self) {
        if self.told {
            ready();
        }
    }
}

/// The drain has begun: no new connections, requests in flight finishing.
pub fn stopping() {
    notify("STOPPING=1\nSTATUS=finishing requests in flight");
}

fn notify(state: &str) {
    let Some(socket) = std::env::var_os(NOTIFY_SOCKET) else {
        return;
    };
    if let Err(error) = send(&socket, state) {
        tracing::warn!(
            %error,
            socket = %socket.to_string_lossy(),
            "cannot notify systemd"
        );
    }
}

/// Sends `state` to the socket named `socket`, as `NOTIFY_SOCKET` spells it: an
/// absolute path, or `@` and the name of a socket in the abstract namespace.
pub fn send(socket: &OsStr, state: &str) -> io::Result<()> {
    let address = address(socket)?;
    let sent = UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &address)?;
    if sent == state.len() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "the notification was cut short",
        ))
    }
}

fn address(socket: &OsStr) -> io::Result<SocketAddr> {
    match socket.as_bytes() {
        [b'@', name @ ..] => SocketAddr::from_abstract_name(name),
        [b'/', ..] => SocketAddr::from_pathname(Path::new(socket)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "NOTIFY_SOCKET is neither an absolute path nor an abstract socket name (@...)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(socket: &UnixDatagram) -> String {
        let mut buffer = [0u8; 256];
        let n = socket.recv(&mut buffer).unwrap();
        String::from_utf8(buffer[..n].to_vec()).unwrap()
    }

    #[test]
    fn a_path_socket_receives_the_state() {
        let dir = std::env::temp_dir().join(format!("keyward-sdnotify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), "READY=1").unwrap();
        assert_eq!(received(&socket), "READY=1");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_abstract_socket_is_named_with_an_at_sign() {
        let name = format!("keyward-sdnotify-test-{}", std::process::id());
        let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&address).unwrap();
        send(OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        assert_eq!(received(&socket), "STOPPING=1");
    }

    #[test]
    fn other_names_are_refused_and_a_missing_socket_is_an_error() {
        for name in ["relative/notify", "", "vsock:2:1"] {
            let error = send(OsStr::new(name), "READY=1").unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{name}");
        }
        let missing = std::env::temp_dir().join("keyward-sdnotify-nobody-listens");
        assert!(send(missing.as_os_str(), "READY=1").is_err());
    }
}
