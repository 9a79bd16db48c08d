//! The engine's data root from `GET /info`, read over the engine's socket
//! without bollard: its model of that answer (`SystemInfo`, a hundred fields
//! of swarm, plugin and runtime details) costs about 120 KiB of the binary,
//! and the module needs one string of it.

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
    let response = super::http::request(socket, timeout, "GET", "/info", None, MAX_RESPONSE)?;
    let body = ok_body(response)?;
    let info: Info = serde_json::from_slice(&body).map_err(|e| {
        format!("its answer to GET /info is not what the engine API documents ({e})")
    })?;
    if info.docker_root_dir.is_empty() {
        return Err("its answer to GET /info names no DockerRootDir".to_owned());
    }
    Ok(PathBuf::from(info.docker_root_dir))
}

fn ok_body(response: super::http::Response) -> Result<Vec<u8>, String> {
    if response.status != 200 {
        return Err(format!(
            "it answered GET /info with {:?}",
            response.status_line
        ));
    }
    Ok(response.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_200_answer_gives_its_body() {
        let ok = super::super::http::parse(b"HTTP/1.0 200 OK\r\n\r\n{}").unwrap();
        assert_eq!(ok_body(ok).unwrap(), b"{}");
        let refused =
            super::super::http::parse(b"HTTP/1.0 500 Internal Server Error\r\n\r\n{}").unwrap();
        assert_eq!(
            ok_body(refused).unwrap_err(),
            "it answered GET /info with \"HTTP/1.0 500 Internal Server Error\""
        );
    }
}
