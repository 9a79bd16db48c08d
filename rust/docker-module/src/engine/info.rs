//! The engine's data root from `GET /info`, read over the engine's socket
//! without bollard: its model of that answer (`SystemInfo`, a hundred fields
//! of swarm, plugin and runtime details) costs about 120 KiB of the binary,
//! and the module needs one string of it.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Answers larger than this are not the engine's `/info`.
const MAX_RESPONSE: u64 = 4 << 20;

#[derive(Deserialize)]
struct Info {
    #[serde(rename = "DockerRootDir")]
    docker_root_dir: String,
}

/// `DockerRootDir` as the engine behind `socket` reports it.
pub fn docker_root_dir(socket: &str, timeout: Duration) -> Result<PathBuf, String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    // HTTP/1.0: the engine answers with the whole body and closes, never chunked.
    stream
        .write_all(b"GET /info HTTP/1.0\r\nHost: docker\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .take(MAX_RESPONSE)
        .read_to_end(&mut response)
        .map_err(|e| e.to_string())?;
    let body = http_body(&response)?;
    let info: Info = serde_json::from_slice(body).map_err(|e| {
        format!("its answer to GET /info is not what the engine API documents ({e})")
    })?;
    if info.docker_root_dir.is_empty() {
        return Err("its answer to GET /info names no DockerRootDir".to_owned());
    }
    Ok(PathBuf::from(info.docker_root_dir))
}

/// The body of a complete HTTP/1.x response with status 200.
pub(crate) fn http_body(response: &[u8]) -> Result<&[u8], String> {
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("its answer ended before the end of the HTTP headers")?;
    let head = String::from_utf8_lossy(&response[..end]);
    let status = head.lines().next().unwrap_or_default();
    let code = status.split(' ').nth(1).unwrap_or_default();
    if !status.starts_with("HTTP/1.") || code != "200" {
        return Err(format!("it answered GET /info with {:?}", status.trim()));
    }
    if head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && !l.to_ascii_lowercase().contains("identity")
    }) {
        return Err("it answered an HTTP/1.0 request with a chunked body".to_owned());
    }
    Ok(&response[end + 4..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_of_a_200_answer_and_a_line_for_anything_else() {
        let ok = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"DockerRootDir\":\"/data/docker\"}";
        assert_eq!(
            http_body(ok).unwrap(),
            b"{\"DockerRootDir\":\"/data/docker\"}"
        );
        let cases: [(&[u8], &str); 4] = [
            (
                b"HTTP/1.0 500 Internal Server Error\r\n\r\n{}",
                "it answered GET /info with \"HTTP/1.0 500 Internal Server Error\"",
            ),
            (
                b"HTTP/1.0 200 OK\r\nContent-",
                "its answer ended before the end of the HTTP headers",
            ),
            (
                b"SSH-2.0-OpenSSH\r\n\r\n",
                "it answered GET /info with \"SSH-2.0-OpenSSH\"",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{}",
                "it answered an HTTP/1.0 request with a chunked body",
            ),
        ];
        for (response, want) in cases {
            assert_eq!(http_body(response).unwrap_err(), want);
        }
    }
}
