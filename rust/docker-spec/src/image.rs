//! Image references pinned by digest: `[REGISTRY/]PATH[:TAG]@sha256:<64 hex>`.
//!
//! A tag alone names whatever the registry serves today; a release must name
//! exactly the bytes that were tested, so every image carries its digest.

use std::fmt;

use serde::Serialize;

/// An image pinned by digest, as written in the artifact.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ImageRef {
    /// `[REGISTRY/]PATH` as written, without tag or digest.
    pub repository: String,
    /// Informational only: the digest decides what is pulled.
    pub tag: Option<String>,
    /// `sha256:` and 64 lower-case hex digits.
    pub digest: String,
    /// The image travels in the artifact (see [`crate::InlineArchive`]):
    /// `digest` is then its image ID, not a registry digest, and the
    /// repository and tag are only a display name.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub inline: bool,
}

impl ImageRef {
    /// Parses and validates; the error text says what is wrong and what would be right.
    pub fn parse(text: &str) -> Result<ImageRef, String> {
        let hint = "write images as REPOSITORY@sha256:<64 hex digits> (`docker inspect --format '{{index .RepoDigests 0}}' IMAGE` prints it)";
        let Some((name, digest)) = text.split_once('@') else {
            return Err(format!("image {text:?} is not pinned by digest; {hint}"));
        };
        let Some(hex) = digest.strip_prefix("sha256:") else {
            return Err(format!(
                "image {text:?} has digest {digest:?}, which is not sha256:…; {hint}"
            ));
        };
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            let found = if hex.len() == 64 {
                "other characters".to_owned()
            } else {
                format!("{} characters", hex.len())
            };
            return Err(format!(
                "image {text:?}: the digest must be sha256: followed by 64 lower-case hex digits (0-9, a-f), found {found}; {hint}"
            ));
        }
        let (repository, tag) = split_tag(name);
        validate_repository(repository).map_err(|why| format!("image {text:?}: {why}"))?;
        if let Some(tag) = tag {
            let ok = !tag.is_empty()
                && tag.len() <= 128
                && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                && tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if !ok {
                return Err(format!(
                    "image {text:?}: tag {tag:?} is not a valid tag (letters, digits, _ . -, at most 128)"
                ));
            }
        }
        Ok(ImageRef {
            repository: repository.to_owned(),
            tag: tag.map(str::to_owned),
            digest: digest.to_owned(),
            inline: false,
        })
    }

    /// What the engine is asked for: `REPOSITORY@sha256:…` (what is pulled,
    /// and what the engine lists in RepoDigests), or for an inline image its
    /// image ID `sha256:…`.
    pub fn pinned(&self) -> String {
        if self.inline {
            self.digest.clone()
        } else {
            format!("{}@{}", self.repository, self.digest)
        }
    }

    /// The registry host (and port) the image comes from; `docker.io` when none is written.
    pub fn registry(&self) -> &str {
        match self.repository.split_once('/') {
            Some((first, _)) if is_domain(first) => {
                if first == "index.docker.io" {
                    "docker.io"
                } else {
                    first
                }
            }
            _ => "docker.io",
        }
    }

    /// The fully qualified `REGISTRY/PATH@DIGEST`, so that `nginx@…`,
    /// `library/nginx@…` and `docker.io/library/nginx@…` compare equal.
    pub fn canonical(&self) -> String {
        canonical_pinned(&self.pinned()).unwrap_or_else(|| self.pinned())
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.repository, self.digest)
    }
}

/// Canonical form of any `NAME@DIGEST` string the engine reports (RepoDigests);
/// `None` when it is not of that shape.
pub fn canonical_pinned(reference: &str) -> Option<String> {
    let (name, digest) = reference.split_once('@')?;
    let (name, _) = split_tag(name);
    let (domain, path) = match name.split_once('/') {
        Some((first, rest)) if is_domain(first) => {
            let d = if first == "index.docker.io" {
                "docker.io"
            } else {
                first
            };
            (d, rest.to_owned())
        }
        _ => ("docker.io", name.to_owned()),
    };
    let path = if domain == "docker.io" && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    Some(format!("{domain}/{path}@{digest}"))
}

/// Splits `NAME[:TAG]`; a colon inside the first component (a registry port) is no tag.
fn split_tag(name: &str) -> (&str, Option<&str>) {
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    }
}

/// The engine's rule: the first component is a registry when it has a dot, a
/// port or is `localhost`.
fn is_domain(component: &str) -> bool {
    component.contains('.') || component.contains(':') || component == "localhost"
}

fn validate_repository(repo: &str) -> Result<(), String> {
    if repo.is_empty() {
        return Err("the repository name is empty".to_owned());
    }
    if repo.len() > 255 {
        return Err("the repository name is longer than 255 characters".to_owned());
    }
    let mut components: Vec<&str> = repo.split('/').collect();
    if components.len() > 1 && is_domain(components[0]) {
        let domain = components.remove(0);
        let (host, port) = match domain.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (domain, None),
        };
        let host_ok = !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        let port_ok = port.map_or(true, |p| {
            !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
        });
        if !host_ok || !port_ok {
            return Err(format!("registry {domain:?} is not a valid HOST[:PORT]"));
        }
    }
    for c in &components {
        if !path_component_ok(c) {
            return Err(format!(
                "repository component {c:?} is not valid (lower-case letters and digits, separated by . _ __ or -)"
            ));
        }
    }
    Ok(())
}

fn path_component_ok(c: &str) -> bool {
    // [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
    let bytes = c.as_bytes();
    if bytes.is_empty() {
        return false;
    }
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn pinned_references_parse() {
        for (text, repo, tag, registry) in [
            (format!("nginx@{D}"), "nginx", None, "docker.io"),
            (
                format!("library/nginx:1.25@{D}"),
                "library/nginx",
                Some("1.25"),
                "docker.io",
            ),
            (
                format!("127.0.0.1:5000/stacks/web@{D}"),
                "127.0.0.1:5000/stacks/web",
                None,
                "127.0.0.1:5000",
            ),
            (
                format!("registry.example.com/a/b-c__d.e:v1@{D}"),
                "registry.example.com/a/b-c__d.e",
                Some("v1"),
                "registry.example.com",
            ),
            (
                format!("localhost/app@{D}"),
                "localhost/app",
                None,
                "localhost",
            ),
        ] {
            let r = ImageRef::parse(&text).unwrap();
            assert_eq!(r.repository, repo, "{text}");
            assert_eq!(r.tag.as_deref(), tag, "{text}");
            assert_eq!(r.registry(), registry, "{text}");
            assert_eq!(r.digest, D);
        }
    }

    #[test]
    fn unpinned_or_malformed_references_are_refused_with_the_reason() {
        for (text, why) in [
            ("nginx".to_owned(), "not pinned by digest"),
            ("nginx:1.25".to_owned(), "not pinned by digest"),
            ("nginx@md5:abcd".to_owned(), "not sha256"),
            ("nginx@sha256:abcd".to_owned(), "64 lower-case hex"),
            (
                format!("nginx@{}", D.to_uppercase().replace("SHA256", "sha256")),
                "64 lower-case hex",
            ),
            (format!("Nginx@{D}"), "repository component"),
            (format!("@{D}"), "empty"),
            (format!("a//b@{D}"), "repository component"),
            (format!("bad_host.com:x/app@{D}"), "registry"),
            (format!("app:@{D}"), "tag"),
        ] {
            let err = ImageRef::parse(&text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn canonical_forms_compare_docker_hub_spellings_equal() {
        let short = ImageRef::parse(&format!("nginx@{D}")).unwrap();
        assert_eq!(short.canonical(), format!("docker.io/library/nginx@{D}"));
        assert_eq!(
            canonical_pinned(&format!("docker.io/library/nginx@{D}")).unwrap(),
            short.canonical()
        );
        assert_eq!(
            canonical_pinned(&format!("index.docker.io/library/nginx@{D}")).unwrap(),
            short.canonical()
        );
        let local = ImageRef::parse(&format!("127.0.0.1:5000/x/y@{D}")).unwrap();
        assert_eq!(local.canonical(), format!("127.0.0.1:5000/x/y@{D}"));
        assert_eq!(canonical_pinned("nginx:latest"), None);
    }
}
