//! The command line's side of a running keyward's control socket (a Unix socket only
//! keyward's own uid can use): one HTTP/1.1 request, one answer.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How long a command waits for keyward (a freeze waits for requests in flight and
/// then for its cancels).
const TIMEOUT: Duration = Duration::from_secs(120);

/// Sends `method path` with `body` to the control socket. `None` when no keyward is
/// listening there; otherwise the status and body of its answer, or why there is none.
pub(crate) fn request(
    socket: &Path,
    method: &str,
    path: &str,
    body: &[u8],
) -> Option<Result<(u16, String), String>> {
    let mut stream = UnixStream::connect(socket).ok()?;
    Some(
        exchange(&mut stream, method, path, body).map_err(|e| format!("{}: {e}", socket.display())),
    )
}

fn exchange(
    stream: &mut UnixStream,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: keyward\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut answer = Vec::new();
    stream.take(16 * 1024 * 1024).read_to_end(&mut answer)?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("keyward's answer was cut short"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("keyward's answer has no status"))?;
    Ok((status, body.to_owned()))
}
