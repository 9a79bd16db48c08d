//! Stack networks over the engine's socket without bollard: its network
//! models (IPAM, per-container endpoints, driver options) would cost tens of
//! KiB of the binary for the four calls and two fields the module uses.
//! Each call is one HTTP/1.0 request: the engine answers with the whole body
//! and closes.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::{EngineError, ErrorKind, Result};

/// Answers larger than this are not the engine's.
const MAX_RESPONSE: u64 = 16 << 20;

/// One network as the module needs it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Network {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Labels", default)]
    pub labels: Option<BTreeMap<String, String>>,
}

/// What to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRequest {
    pub name: String,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
}

pub struct Client<'a> {
    pub socket: &'a str,
    pub timeout: Duration,
}

impl Client<'_> {
    /// The networks carrying `label=value`.
    pub fn list(&self, label: &str, value: &str) -> Result<Vec<Network>> {
        let filters = json!({"label": [format!("{label}={value}")]}).to_string();
        let path = format!("/networks?filters={}", percent_encode(&filters));
        let (status, body) = self
            .request("GET", &path, None)
            .map_err(|e| self.error("list networks on", ErrorKind::Unreachable, e))?;
        if status != 200 {
            return Err(self.refused("list networks on", status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| {
            self.error(
                "list networks on",
                ErrorKind::Other,
                format!("its answer is not what the engine API documents ({e})"),
            )
        })
    }

    /// Whether a network of that name (or id) exists.
    pub fn exists(&self, name: &str) -> Result<bool> {
        let (status, body) = self
            .request("GET", &format!("/networks/{name}"), None)
            .map_err(|e| EngineError::new("inspect network", name, ErrorKind::Unreachable, e))?;
        match status {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(refusal("inspect network", name, status, &body)),
        }
    }

    /// Creates a bridge network; one that exists under that name already
    /// (an earlier attempt) is a success.
    pub fn create(&self, request: &NetworkRequest) -> Result<()> {
        let body = json!({
            "Name": request.name,
            "Driver": "bridge",
            "Internal": request.internal,
            "Labels": request.labels,
            "CheckDuplicate": true,
        })
        .to_string();
        let (status, answer) = self
            .request("POST", "/networks/create", Some(&body))
            .map_err(|e| {
                EngineError::new("create network", &request.name, ErrorKind::Unreachable, e)
            })?;
        match status {
            200 | 201 => Ok(()),
            409 => Ok(()),
            _ => Err(refusal("create network", &request.name, status, &answer)),
        }
    }

    /// Attaches `container` with `aliases`; one attached already is a success.
    pub fn connect(&self, network: &str, container: &str, aliases: &[String]) -> Result<()> {
        let body = json!({
            "Container": container,
            "EndpointConfig": {"Aliases": aliases},
        })
        .to_string();
        let target = format!("{container} to network {network}");
        let (status, answer) = self
            .request("POST", &format!("/networks/{network}/connect"), Some(&body))
            .map_err(|e| EngineError::new("connect", &target, ErrorKind::Unreachable, e))?;
        let message = String::from_utf8_lossy(&answer);
        match status {
            200 => Ok(()),
            // 20.10 answers 403 "endpoint with name … already exists in network …".
            403 if message.contains("already exists") => Ok(()),
            _ => Err(refusal("connect", &target, status, &answer)),
        }
    }

    /// Removes a network; one already gone is a success, one in use a
    /// conflict.
    pub fn remove(&self, name: &str) -> Result<()> {
        let (status, body) = self
            .request("DELETE", &format!("/networks/{name}"), None)
            .map_err(|e| EngineError::new("remove network", name, ErrorKind::Unreachable, e))?;
        match status {
            200 | 204 | 404 => Ok(()),
            _ => Err(refusal("remove network", name, status, &body)),
        }
    }

    fn error(&self, op: &'static str, kind: ErrorKind, message: String) -> EngineError {
        EngineError::new(op, self.socket, kind, message)
    }

    fn refused(&self, op: &'static str, status: u16, body: &[u8]) -> EngineError {
        refusal(op, self.socket, status, body)
    }

    /// (status, body) of one request.
    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, Vec<u8>), String> {
        super::http::request(self.socket, self.timeout, method, path, body, MAX_RESPONSE)
            .map(|r| (r.status, r.body))
    }
}

/// An engine answer other than success as an error of the right kind.
fn refusal(op: &'static str, target: &str, status: u16, body: &[u8]) -> EngineError {
    #[derive(Deserialize)]
    struct Message {
        message: String,
    }
    let message = serde_json::from_slice::<Message>(body)
        .map(|m| m.message)
        .unwrap_or_else(|_| crate::archive::printable(body, 200));
    let kind = match status {
        404 => ErrorKind::NotFound,
        403 | 409 => ErrorKind::Conflict,
        _ => ErrorKind::Other,
    };
    EngineError::new(op, target, kind, format!("{message} (HTTP {status})"))
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_keep_the_engine_message_and_their_kind() {
        let e = refusal("remove network", "shop_default", 403, b"{\"message\":\"error while removing network: network shop_default id 1 has active endpoints\"}");
        assert_eq!(e.kind, ErrorKind::Conflict);
        assert_eq!(
            e.to_string(),
            "container engine: cannot remove network shop_default: error while removing network: network shop_default id 1 has active endpoints (HTTP 403)"
        );
        assert_eq!(refusal("x", "y", 404, b"{}").kind, ErrorKind::NotFound);
        assert_eq!(refusal("x", "y", 500, b"\x01boom").kind, ErrorKind::Other);
    }

    #[test]
    fn filters_are_percent_encoded() {
        assert_eq!(
            percent_encode("{\"label\":[\"io.mender.composable.stack=shop\"]}"),
            "%7B%22label%22%3A%5B%22io.mender.composable.stack%3Dshop%22%5D%7D"
        );
    }
}
