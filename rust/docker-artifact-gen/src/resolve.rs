//! Turning image references into `REPOSITORY@sha256:…` without pulling:
//! references that already carry a digest are kept, others are looked up in
//! the local engine's RepoDigests.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use artifact_gen::Progress;
use bollard::Docker;
use docker_spec::image::canonical_pinned;
use docker_spec::ImageRef;
use futures_util::StreamExt;
use tokio::runtime::Runtime;

/// Where the local engine listens: `DOCKER_HOST=unix://PATH`, else the
/// default socket. Only unix sockets: the client is built without TCP/TLS.
pub fn socket_from(docker_host: Option<&str>) -> Result<String> {
    match docker_host {
        None | Some("") => Ok("/var/run/docker.sock".to_owned()),
        Some(host) => match host.strip_prefix("unix://") {
            Some(path) if !path.is_empty() => Ok(path.to_owned()),
            _ => bail!(
                "DOCKER_HOST={host:?} is not a unix socket (unix:///path); this generator reaches the \
                 engine over its unix socket only, or pass images already pinned as REPOSITORY@sha256:…"
            ),
        },
    }
}

/// Splits `NAME[:TAG][@DIGEST]` into the repository and the tag.
pub fn split_reference(reference: &str) -> (&str, Option<&str>) {
    let name = reference.split_once('@').map_or(reference, |(n, _)| n);
    match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => (&name[..i], Some(&name[i + 1..])),
        _ => (name, None),
    }
}

/// The RepoDigests entry of `repository` (compared canonically, so that
/// `nginx` matches `docker.io/library/nginx@…`), written as the engine
/// lists it.
pub fn pick_repo_digest<'a>(repository: &str, repo_digests: &'a [String]) -> Option<&'a str> {
    let wanted = canonical_pinned(&format!("{repository}@sha256:x"))?;
    let wanted = wanted.split_once('@')?.0.to_owned();
    repo_digests.iter().map(String::as_str).find(|entry| {
        canonical_pinned(entry)
            .and_then(|c| c.split_once('@').map(|(n, _)| n == wanted))
            .unwrap_or(false)
    })
}

/// Resolves references lazily: the engine is contacted only when one lacks a digest.
pub struct Resolver {
    socket: String,
    engine: Option<(Runtime, Docker)>,
}

impl Resolver {
    pub fn new(socket: String) -> Resolver {
        Resolver {
            socket,
            engine: None,
        }
    }

    /// `REPOSITORY[:TAG]@sha256:…` for `reference`; the tag is kept when
    /// `keep_tag` (informational in docker-stack meta-data).
    pub fn resolve(&mut self, reference: &str, keep_tag: bool) -> Result<String> {
        if reference.contains('@') {
            ImageRef::parse(reference).map_err(|e| anyhow!(e))?;
            return Ok(reference.to_owned());
        }
        let (repository, tag) = split_reference(reference);
        let digests = self.repo_digests(reference)?;
        let Some(entry) = pick_repo_digest(repository, &digests) else {
            if digests.is_empty() {
                bail!(
                    "image {reference} has no registry digest in the local engine; push it to a registry \
                     first (docker push {reference}) so the device can pull it by digest"
                );
            }
            bail!(
                "image {reference} has no registry digest for {repository} (the engine knows {}); \
                 name the image as it was pushed, or push it to {repository} first",
                digests.join(", ")
            );
        };
        let digest = entry.split_once('@').map_or("", |(_, d)| d);
        let pinned = match (keep_tag, tag) {
            (true, Some(tag)) => format!("{repository}:{tag}@{digest}"),
            _ => format!("{repository}@{digest}"),
        };
        ImageRef::parse(&pinned).map_err(|e| anyhow!(e))?;
        Ok(pinned)
    }

    fn repo_digests(&mut self, reference: &str) -> Result<Vec<String>> {
        match self.inspect(reference)? {
            Some(image) => Ok(image.repo_digests.unwrap_or_default()),
            None => bail!(
                "image {reference} is not in the local engine at {}; pull or build it and push it to a \
                 registry, or pass it pinned as REPOSITORY@sha256:…",
                self.socket
            ),
        }
    }

    /// The image ID (`sha256:…`) and RepoTags of a local image, for
    /// embedding it (`--inline`): no registry involved.
    pub fn local_image(&mut self, reference: &str) -> Result<(String, Vec<String>)> {
        let Some(image) = self.inspect(reference)? else {
            bail!(
                "image {reference} is not in the local engine at {}; build, pull or load it there first, \
                 or name a file as docker-archive:PATH or oci-archive:PATH",
                self.socket
            );
        };
        let id = image
            .id
            .filter(|id| id.starts_with("sha256:"))
            .ok_or_else(|| anyhow!("the engine reports no sha256 image ID for {reference}"))?;
        Ok((id, image.repo_tags.unwrap_or_default()))
    }

    /// Streams the engine's export of `ids` (`docker save`) into `dest`,
    /// never holding it in memory; returns its length.
    pub fn export(&mut self, ids: &[String], dest: &Path) -> Result<u64> {
        let what = match ids {
            [one] => {
                let hex = one.strip_prefix("sha256:").unwrap_or(one);
                format!("image {}", &hex[..hex.len().min(12)])
            }
            _ => format!("{} images", ids.len()),
        };
        let socket = self.socket.clone();
        let (runtime, docker) = self.connect(&what)?;
        // The engine answers only once it has staged the export; the
        // client's request timeout would cut large images off.
        let mut docker = docker.clone();
        docker.set_timeout(Duration::from_secs(3600));
        let names: Vec<&str> = ids.iter().map(String::as_str).collect();
        let file =
            File::create(dest).with_context(|| format!("cannot create {}", dest.display()))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut progress = Progress::on_terminal(format!("docker-artifact-gen: exporting {what}"));
        let failed = |e: &dyn std::fmt::Display| {
            anyhow!("exporting {what} from the engine at {socket} failed: {e}")
        };
        runtime.block_on(async {
            let mut stream = docker.export_images(&names);
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| failed(&e))?;
                out.write_all(&chunk)
                    .with_context(|| format!("cannot write {}", dest.display()))?;
                progress.add(chunk.len() as u64);
            }
            Ok::<(), anyhow::Error>(())
        })?;
        out.flush()
            .with_context(|| format!("cannot write {}", dest.display()))?;
        let bytes = progress.bytes();
        progress.finish();
        Ok(bytes)
    }

    /// `OS/ARCH[/VARIANT]` of a local image, `None` when the engine does
    /// not have it.
    pub fn platform(&mut self, reference: &str) -> Result<Option<String>> {
        Ok(self.inspect(reference)?.map(|image| {
            let mut platform = format!(
                "{}/{}",
                image.os.unwrap_or_default(),
                image.architecture.unwrap_or_default()
            );
            if let Some(variant) = image.variant.filter(|v| !v.is_empty()) {
                platform.push('/');
                platform.push_str(&variant);
            }
            platform
        }))
    }

    /// `None` when the engine does not know `reference`.
    fn inspect(&mut self, reference: &str) -> Result<Option<bollard::models::ImageInspect>> {
        let socket = self.socket.clone();
        let (runtime, docker) = self.connect(reference)?;
        match runtime.block_on(docker.inspect_image(reference)) {
            Ok(image) => Ok(Some(image)),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(anyhow!(
                "cannot inspect image {reference} in the engine at {socket}: {e}"
            )),
        }
    }

    /// The engine connection, made on first use; `what` names what it is needed for.
    fn connect(&mut self, what: &str) -> Result<&(Runtime, Docker)> {
        if self.engine.is_none() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the I/O runtime")?;
            let docker = Docker::connect_with_unix(&self.socket, 30, bollard::API_DEFAULT_VERSION)
                .and_then(|d| runtime.block_on(d.negotiate_version()))
                .map_err(|e| {
                    anyhow!(
                        "cannot reach the container engine at {} to look up {what}: {e}; start dockerd or \
                         set DOCKER_HOST=unix:///path (without --inline, images pinned as \
                         REPOSITORY@sha256:… need no engine)",
                        self.socket
                    )
                })?;
            self.engine = Some((runtime, docker));
        }
        Ok(self.engine.as_ref().expect("connected above"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    #[test]
    fn docker_host_names_the_socket() {
        assert_eq!(socket_from(None).unwrap(), "/var/run/docker.sock");
        assert_eq!(
            socket_from(Some("unix:///run/d.sock")).unwrap(),
            "/run/d.sock"
        );
        assert!(socket_from(Some("tcp://1.2.3.4:2375")).is_err());
    }

    #[test]
    fn references_split_at_the_tag_not_the_port() {
        assert_eq!(
            split_reference("reg:5000/a/b:1.0"),
            ("reg:5000/a/b", Some("1.0"))
        );
        assert_eq!(split_reference("reg:5000/a/b"), ("reg:5000/a/b", None));
        assert_eq!(split_reference("busybox"), ("busybox", None));
    }

    #[test]
    fn the_repo_digest_of_the_named_repository_is_picked() {
        let digests = vec![
            format!("other.example.com/x@{D}"),
            format!("127.0.0.1:5000/stacks/web@{D}"),
        ];
        assert_eq!(
            pick_repo_digest("127.0.0.1:5000/stacks/web", &digests),
            Some(digests[1].as_str())
        );
        assert_eq!(pick_repo_digest("local/web", &digests), None);
        let hub = vec![format!("nginx@{D}")];
        assert!(pick_repo_digest("docker.io/library/nginx", &hub).is_some());
    }

    #[test]
    fn pinned_references_are_kept_without_an_engine() {
        let mut r = Resolver::new("/nonexistent.sock".to_owned());
        let pinned = format!("reg.example.com/app@{D}");
        assert_eq!(r.resolve(&pinned, false).unwrap(), pinned);
        assert!(r.resolve("reg.example.com/app@sha256:12", false).is_err());
    }
}
