//! One HTTP/1.0 request over the engine's socket, for the few calls the
//! module makes without bollard (see `info` and `network`): with HTTP/1.0 the
//! engine answers with the whole body and closes, never chunked.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// A complete answer.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// As the engine wrote it, for messages.
    pub status_line: String,
    pub body: Vec<u8>,
}

/// Sends `method path` (with a JSON `body`) and reads at most `max` bytes
/// of answer, each way within `timeout`.
pub fn request(
    socket: &str,
    timeout: Duration,
    method: &str,
    path: &str,
    body: Option<&str>,
    max: u64,
) -> Result<Response, String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: docker\r\n");
    match body {
        Some(body) => request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )),
        None => request.push_str("\r\n"),
    }
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .take(max)
        .read_to_end(&mut response)
        .map_err(|e| e.to_string())?;
    parse(&response)
}

/// The status and body of a complete HTTP/1.x answer.
pub fn parse(response: &[u8]) -> Result<Response, String> {
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("its answer ended before the end of the HTTP headers")?;
    let head = String::from_utf8_lossy(&response[..end]);
    let status_line = head.lines().next().unwrap_or_default().trim().to_owned();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.split(' ').nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("its answer {status_line:?} is not HTTP"))?;
    if head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && !l.contains("identity")
    }) {
        return Err("it answered an HTTP/1.0 request with a chunked body".to_owned());
    }
    Ok(Response {
        status,
        status_line,
        body: response[end + 4..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_split_into_status_and_body_and_anything_else_is_one_line() {
        let r =
            parse(b"HTTP/1.0 201 Created\r\nContent-Type: application/json\r\n\r\n{\"Id\":\"x\"}")
                .unwrap();
        assert_eq!(
            (r.status, r.status_line.as_str()),
            (201, "HTTP/1.0 201 Created")
        );
        assert_eq!(r.body, b"{\"Id\":\"x\"}");
        assert_eq!(
            parse(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap().body,
            Vec::<u8>::new()
        );
        let cases: [(&[u8], &str); 3] = [
            (
                b"HTTP/1.0 200 OK\r\nContent-",
                "its answer ended before the end of the HTTP headers",
            ),
            (
                b"SSH-2.0-OpenSSH\r\n\r\n",
                "its answer \"SSH-2.0-OpenSSH\" is not HTTP",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{}",
                "it answered an HTTP/1.0 request with a chunked body",
            ),
        ];
        for (response, want) in cases {
            assert_eq!(parse(response).unwrap_err(), want);
        }
    }
}
