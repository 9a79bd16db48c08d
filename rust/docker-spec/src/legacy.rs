//! The format of the old `docker-artifact-gen`:
//! `{"containers": ["REPO@sha256:…", …], "run_args": "…"}`.
//!
//! The old shell module ran `docker run -dt ${run_args} IMAGE` for every
//! image. Here `run_args` is split without a shell (see [`crate::words`]) and
//! the `docker run` flags in [`SUPPORTED_FLAGS`] become create parameters; any
//! other flag is refused by name, so nothing is silently dropped.

use serde_json::{Map, Value};

use crate::container::{self, ContainerSpec, Healthcheck, LogConfig, VolumeMount};
use crate::document::Object;
use crate::error::{Path, Result, SpecError};
use crate::image::ImageRef;
use crate::{words, Release, Strategy, LEGACY_STACK};

/// The `docker run` flags `run_args` may use (long name, short name, takes a value).
pub const SUPPORTED_FLAGS: &[(&str, Option<char>, bool)] = &[
    ("env", Some('e'), true),
    ("volume", Some('v'), true),
    ("publish", Some('p'), true),
    ("name", None, true),
    ("restart", None, true),
    ("network", None, true),
    ("net", None, true),
    ("privileged", None, false),
    ("label", Some('l'), true),
    ("user", Some('u'), true),
    ("workdir", Some('w'), true),
    ("device", None, true),
    ("cap-add", None, true),
    ("cap-drop", None, true),
    ("entrypoint", None, true),
    ("hostname", Some('h'), true),
    ("tty", Some('t'), false),
    ("interactive", Some('i'), false),
    ("detach", Some('d'), false),
    ("health-cmd", None, true),
    ("health-interval", None, true),
    ("health-timeout", None, true),
    ("health-retries", None, true),
    ("health-start-period", None, true),
    ("no-healthcheck", None, false),
    ("read-only", None, false),
    ("tmpfs", None, true),
    ("log-driver", None, true),
    ("log-opt", None, true),
    ("memory", Some('m'), true),
    ("cpus", None, true),
];

/// Flags refused with a specific reason rather than the generic one.
fn refused_reason(long: &str) -> Option<&'static str> {
    Some(match long {
        "env-file" => "it reads a file on the machine that runs docker, which the artifact does not carry; write each variable as -e KEY=VALUE",
        "rm" => "it deletes the container when it stops, which leaves nothing to roll back to; remove it",
        "mount" => "use -v SOURCE:TARGET[:OPTIONS] or the docker-stack format's binds/volumes",
        "publish-all" | "P" => "it publishes on random host ports; list them with -p HOST:CONTAINER",
        _ => return None,
    })
}

pub(crate) fn parse(map: &Map<String, Value>) -> Result<Release> {
    let root = Path::root();
    let mut obj = Object::new(map, root.clone());
    let images = obj.required_array("containers")?;
    let run_args = obj.optional_str_or_null("run_args")?.unwrap_or_default();
    obj.finish()?;

    let run_args_at = root.key("run_args");
    let (template, explicit_name) =
        parse_run_args(&run_args).map_err(|problem| SpecError::invalid(&run_args_at, problem))?;
    crate::stack::check_mount_targets(&template, &run_args_at)?;

    let containers_at = root.key("containers");
    if images.is_empty() {
        return Err(SpecError::invalid(
            &containers_at,
            "lists no images; give at least one REPO@sha256:… image",
        ));
    }
    if explicit_name.is_some() && images.len() > 1 {
        return Err(SpecError::invalid(
            &run_args_at,
            format!(
                "--name applies to every image, but the artifact has {}; container names must be unique: drop --name (names then come from the image repositories) or use the docker-stack format",
                images.len()
            ),
        ));
    }
    let mut containers: Vec<ContainerSpec> = Vec::new();
    for (i, item) in images.iter().enumerate() {
        let at = containers_at.index(i);
        let text = item
            .as_str()
            .ok_or_else(|| SpecError::invalid(&at, "must be a string REPO@sha256:…"))?;
        let image = ImageRef::parse(text).map_err(|p| SpecError::invalid(&at, p))?;
        let name = match &explicit_name {
            Some(n) => n.clone(),
            None => derived_name(&image, &containers),
        };
        container::check_container_name(&name).map_err(|p| {
            SpecError::invalid(
                &at,
                format!(
                    "{p}; the name comes from the repository's last component, set one with --name"
                ),
            )
        })?;
        let mut spec = template.clone();
        spec.name = name;
        spec.image = image;
        containers.push(spec);
    }
    Ok(Release {
        format: crate::Format::Legacy,
        stack: LEGACY_STACK.to_owned(),
        strategy: Strategy::StopFirst,
        health_timeout: None,
        registry: None,
        replaces: Vec::new(),
        start: crate::StartOrder::Sequence,
        containers,
        inline: Vec::new(),
        networks: Vec::new(),
    })
}

/// The repository's last path component, made unique with `-2`, `-3`, … .
fn derived_name(image: &ImageRef, taken: &[ContainerSpec]) -> String {
    let base = image
        .repository
        .rsplit('/')
        .next()
        .unwrap_or(&image.repository);
    let base = if base.len() < 2 {
        format!("{base}-1")
    } else {
        base.chars().take(container::MAX_NAME_LEN - 4).collect()
    };
    let used = |n: &str| taken.iter().any(|c| c.name == n);
    if !used(&base) {
        return base;
    }
    (2..)
        .map(|i| format!("{base}-{i}"))
        .find(|n| !used(n))
        .expect("an unused suffix exists")
}

#[derive(Default)]
struct HealthFlags {
    cmd: Option<String>,
    interval: Option<std::time::Duration>,
    timeout: Option<std::time::Duration>,
    start_period: Option<std::time::Duration>,
    retries: Option<u32>,
    none: bool,
}

/// The container template `run_args` describes (name and image are filled in
/// per image) and the `--name`, if any.
pub fn parse_run_args(run_args: &str) -> Result<(ContainerSpec, Option<String>), String> {
    let placeholder = ImageRef {
        repository: String::new(),
        tag: None,
        digest: String::new(),
        inline: false,
    };
    let mut spec = ContainerSpec::new(String::new(), placeholder);
    // The old module always ran `docker run -dt`.
    spec.tty = true;
    let mut name = None;
    let mut health = HealthFlags::default();
    let words = words::split(run_args)?;
    let mut i = 0;
    while i < words.len() {
        let word = &words[i];
        i += 1;
        if let Some(long) = word.strip_prefix("--") {
            if long.is_empty() {
                return Err(positional(word));
            }
            let (flag, inline) = match long.split_once('=') {
                Some((f, v)) => (f, Some(v)),
                None => (long, None),
            };
            let takes_value = lookup(flag, None)?;
            let value = if takes_value {
                match inline {
                    Some(v) => v.to_owned(),
                    None => next_value(&words, &mut i, &format!("--{flag}"))?,
                }
            } else {
                match inline {
                    None | Some("true") => "true".to_owned(),
                    Some("false") => "false".to_owned(),
                    Some(v) => {
                        return Err(format!(
                            "--{flag}={v}: a switch takes true or false, or no value"
                        ))
                    }
                }
            };
            apply(&mut spec, &mut name, &mut health, flag, &value)?;
        } else if let Some(shorts) = word.strip_prefix('-').filter(|s| !s.is_empty()) {
            let chars: Vec<char> = shorts.chars().collect();
            let mut j = 0;
            while j < chars.len() {
                let c = chars[j];
                j += 1;
                let long = long_of(c)?;
                if lookup(long, Some(c))? {
                    let rest: String = chars[j..].iter().collect();
                    let rest = rest.strip_prefix('=').unwrap_or(&rest);
                    let value = if rest.is_empty() {
                        next_value(&words, &mut i, &format!("-{c}"))?
                    } else {
                        rest.to_owned()
                    };
                    apply(&mut spec, &mut name, &mut health, long, &value)?;
                    break;
                }
                apply(&mut spec, &mut name, &mut health, long, "true")?;
            }
        } else {
            return Err(positional(word));
        }
    }
    spec.healthcheck = build_health(health)?;
    Ok((spec, name))
}

fn positional(word: &str) -> String {
    format!(
        "{word:?} is not a flag; run_args may hold only docker run options (the old module placed them before the image, so a command or image cannot be given there)"
    )
}

fn supported_list() -> String {
    SUPPORTED_FLAGS
        .iter()
        .map(|(l, s, _)| match s {
            Some(s) => format!("-{s}/--{l}"),
            None => format!("--{l}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn long_of(short: char) -> Result<&'static str, String> {
    if short == 'P' {
        return Err(format!(
            "flag -P is not supported: {}",
            refused_reason("P").unwrap_or_default()
        ));
    }
    SUPPORTED_FLAGS
        .iter()
        .find(|(_, s, _)| *s == Some(short))
        .map(|(l, _, _)| *l)
        .ok_or_else(|| {
            format!(
                "flag -{short} is not supported; supported docker run flags: {}",
                supported_list()
            )
        })
}

/// Whether the flag takes a value; an error naming it when it is not supported.
fn lookup(long: &str, short: Option<char>) -> Result<bool, String> {
    if let Some((_, _, takes)) = SUPPORTED_FLAGS.iter().find(|(l, _, _)| *l == long) {
        return Ok(*takes);
    }
    let shown = short.map_or_else(|| format!("--{long}"), |c| format!("-{c}"));
    match refused_reason(long) {
        Some(why) => Err(format!("flag {shown} is not supported: {why}")),
        None => Err(format!(
            "flag {shown} is not supported; supported docker run flags: {}",
            supported_list()
        )),
    }
}

fn next_value(words: &[String], i: &mut usize, flag: &str) -> Result<String, String> {
    match words.get(*i) {
        Some(v) => {
            *i += 1;
            Ok(v.clone())
        }
        None => Err(format!("flag {flag} needs a value")),
    }
}

fn apply(
    spec: &mut ContainerSpec,
    name: &mut Option<String>,
    health: &mut HealthFlags,
    flag: &str,
    value: &str,
) -> Result<(), String> {
    let on = value == "true";
    let with = |e: String| format!("--{flag}: {e}");
    match flag {
        "env" => {
            let Some((k, v)) = value.split_once('=') else {
                return Err(format!(
                    "--env {value:?} takes its value from the environment of the machine that runs docker, which the module does not pass on; write -e {value}=VALUE"
                ));
            };
            container::check_env_key(k).map_err(with)?;
            spec.env.insert(k.to_owned(), v.to_owned());
        }
        "volume" => {
            let parts: Vec<&str> = value.split(':').collect();
            if parts.len() < 2 {
                return Err(format!(
                    "--volume {value:?} makes an anonymous volume, which piles up with every deployment; name it (-v NAME:{value}) or bind a host path (-v /data/x:{value})"
                ));
            }
            if parts[0].starts_with('/') {
                spec.binds.push(container::parse_bind(value).map_err(with)?);
            } else {
                let (name, target, options) = match parts.as_slice() {
                    [n, t] => (*n, *t, ""),
                    [n, t, o] => (*n, *t, *o),
                    _ => return Err(format!("--volume {value:?} is not NAME:TARGET[:ro|rw]")),
                };
                container::check_object_name("volume", name).map_err(with)?;
                container::check_absolute("volume target", target).map_err(with)?;
                let read_only = match options {
                    "" | "rw" => false,
                    "ro" => true,
                    o => {
                        return Err(format!(
                            "--volume {value:?}: option {o:?} is not supported for named volumes (ro or rw)"
                        ))
                    }
                };
                spec.volumes.push(VolumeMount {
                    name: name.to_owned(),
                    target: target.to_owned(),
                    read_only,
                    purge_on_deploy: false,
                });
            }
        }
        "publish" => spec.ports.push(container::parse_port(value).map_err(with)?),
        "name" => {
            container::check_container_name(value).map_err(with)?;
            *name = Some(value.to_owned());
        }
        "restart" => spec.restart = container::parse_restart(value).map_err(with)?,
        "network" | "net" => {
            container::check_network_mode(value).map_err(with)?;
            spec.network_mode = Some(value.to_owned());
        }
        "privileged" => spec.privileged = on,
        "label" => {
            let (k, v) = value.split_once('=').unwrap_or((value, ""));
            container::check_label(k).map_err(with)?;
            spec.labels.insert(k.to_owned(), v.to_owned());
        }
        "user" => spec.user = Some(non_empty(flag, value)?),
        "workdir" => {
            container::check_absolute("workdir", value).map_err(with)?;
            spec.workdir = Some(value.to_owned());
        }
        "device" => spec
            .devices
            .push(container::parse_device(value).map_err(with)?),
        "cap-add" => {
            container::check_capability(value).map_err(with)?;
            spec.cap_add.push(value.to_owned());
        }
        "cap-drop" => {
            container::check_capability(value).map_err(with)?;
            spec.cap_drop.push(value.to_owned());
        }
        "entrypoint" => {
            // docker run: one string, not split; empty resets the image's.
            spec.entrypoint = Some(if value.is_empty() {
                Vec::new()
            } else {
                vec![value.to_owned()]
            });
        }
        "hostname" => spec.hostname = Some(non_empty(flag, value)?),
        "tty" => spec.tty = on,
        "interactive" => spec.open_stdin = on,
        // The module always creates and starts; there is no foreground mode.
        "detach" => {}
        "health-cmd" => health.cmd = Some(non_empty(flag, value)?),
        "health-interval" => {
            health.interval = Some(container::parse_go_duration(value).map_err(with)?)
        }
        "health-timeout" => {
            health.timeout = Some(container::parse_go_duration(value).map_err(with)?)
        }
        "health-start-period" => {
            health.start_period = Some(container::parse_go_duration(value).map_err(with)?)
        }
        "health-retries" => {
            health.retries = Some(
                value
                    .parse()
                    .map_err(|_| format!("--health-retries {value:?} is not a whole number"))?,
            )
        }
        "no-healthcheck" => health.none = on,
        "read-only" => spec.read_only = on,
        "tmpfs" => {
            let (path, opts) = value.split_once(':').unwrap_or((value, ""));
            container::check_absolute("tmpfs mount point", path).map_err(with)?;
            spec.tmpfs.insert(path.to_owned(), opts.to_owned());
        }
        "log-driver" => {
            let log = spec.log.get_or_insert_with(|| LogConfig {
                driver: String::new(),
                options: Default::default(),
            });
            log.driver = non_empty(flag, value)?;
        }
        "log-opt" => {
            let Some((k, v)) = value.split_once('=') else {
                return Err(format!("--log-opt {value:?} is not KEY=VALUE"));
            };
            let log = spec.log.get_or_insert_with(|| LogConfig {
                driver: String::new(),
                options: Default::default(),
            });
            log.options.insert(k.to_owned(), v.to_owned());
        }
        "memory" => spec.memory_bytes = Some(container::parse_memory(value).map_err(with)?),
        "cpus" => spec.nano_cpus = Some(container::parse_cpus(value).map_err(with)?),
        other => unreachable!("flag --{other} is in SUPPORTED_FLAGS but has no handler"),
    }
    Ok(())
}

fn non_empty(flag: &str, value: &str) -> Result<String, String> {
    if value.is_empty() {
        Err(format!("--{flag} needs a non-empty value"))
    } else {
        Ok(value.to_owned())
    }
}

fn build_health(h: HealthFlags) -> Result<Option<Healthcheck>, String> {
    let tuned = h.cmd.is_some()
        || h.interval.is_some()
        || h.timeout.is_some()
        || h.start_period.is_some()
        || h.retries.is_some();
    if h.none {
        if tuned {
            return Err(
                "--no-healthcheck conflicts with the --health-* flags; keep one".to_owned(),
            );
        }
        return Ok(Some(Healthcheck {
            test: vec!["NONE".to_owned()],
            interval: None,
            timeout: None,
            start_period: None,
            retries: None,
        }));
    }
    if !tuned {
        return Ok(None);
    }
    Ok(Some(Healthcheck {
        // Empty: keep the image's test, change only the timings.
        test: h
            .cmd
            .map(|c| vec!["CMD-SHELL".to_owned(), c])
            .unwrap_or_default(),
        interval: h.interval,
        timeout: h.timeout,
        start_period: h.start_period,
        retries: h.retries,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::RestartPolicy;

    fn args(text: &str) -> (ContainerSpec, Option<String>) {
        parse_run_args(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn err(text: &str) -> String {
        match parse_run_args(text) {
            Ok(_) => panic!("{text} should fail"),
            Err(e) => e,
        }
    }

    #[test]
    fn empty_run_args_are_the_old_modules_defaults() {
        let (s, name) = args("");
        assert!(s.tty, "the old module always passed -t");
        assert!(!s.open_stdin && !s.privileged);
        assert_eq!(name, None);
        assert_eq!(s.restart, RestartPolicy::No);
    }

    #[test]
    fn every_supported_flag_in_both_forms() {
        let (s, name) = args(
            "-e A=1 --env=B='two words' -v /data/x:/x:ro --volume cache:/cache \
             -p 8080:80 --publish=53:53/udp --name web --restart on-failure:3 \
             --network host --privileged -l team=core --label=flag -u 1000:1000 \
             -w /srv --device /dev/ttyS0 --cap-add NET_ADMIN --cap-drop=ALL \
             --entrypoint /bin/sh -h box -i -d --health-cmd 'wget -q -O- localhost' \
             --health-interval 5s --health-timeout=2s --health-retries 3 \
             --health-start-period 1s --read-only --tmpfs /run:size=8m \
             --log-driver json-file --log-opt max-size=1m -m 64m --cpus 0.5",
        );
        assert_eq!(name.as_deref(), Some("web"));
        assert_eq!(s.env["A"], "1");
        assert_eq!(s.env["B"], "two words");
        assert_eq!(s.binds[0].to_engine(), "/data/x:/x:ro");
        assert_eq!(s.volumes[0].name, "cache");
        assert_eq!(s.ports.len(), 2);
        assert_eq!(s.restart, RestartPolicy::OnFailure(Some(3)));
        assert_eq!(s.network_mode.as_deref(), Some("host"));
        assert!(s.privileged && s.open_stdin && s.read_only && s.tty);
        assert_eq!(s.labels["team"], "core");
        assert_eq!(s.labels["flag"], "");
        assert_eq!(s.user.as_deref(), Some("1000:1000"));
        assert_eq!(s.workdir.as_deref(), Some("/srv"));
        assert_eq!(s.devices[0].host, "/dev/ttyS0");
        assert_eq!(s.cap_add, ["NET_ADMIN"]);
        assert_eq!(s.cap_drop, ["ALL"]);
        assert_eq!(s.entrypoint.as_deref(), Some(&["/bin/sh".to_owned()][..]));
        assert_eq!(s.hostname.as_deref(), Some("box"));
        let h = s.healthcheck.unwrap();
        assert_eq!(h.test, ["CMD-SHELL", "wget -q -O- localhost"]);
        assert_eq!(h.retries, Some(3));
        assert_eq!(h.interval, Some(std::time::Duration::from_secs(5)));
        assert_eq!(s.tmpfs["/run"], "size=8m");
        assert_eq!(s.log.as_ref().unwrap().driver, "json-file");
        assert_eq!(s.log.unwrap().options["max-size"], "1m");
        assert_eq!(s.memory_bytes, Some(64 << 20));
        assert_eq!(s.nano_cpus, Some(500_000_000));
    }

    #[test]
    fn short_flags_cluster_and_take_attached_values() {
        let (s, _) = args("-dit -eA=1 -e=B=2 -p8080:80");
        assert!(s.tty && s.open_stdin);
        assert_eq!(s.env["A"], "1");
        assert_eq!(s.env["B"], "2");
        assert_eq!(s.ports[0].host_port, Some(8080));
        let (s, _) = args("--tty=false --privileged=true");
        assert!(!s.tty && s.privileged);
    }

    #[test]
    fn unsupported_and_refused_flags_name_themselves() {
        for (text, want) in [
            (
                "--pid host",
                "flag --pid is not supported; supported docker run flags: -e/--env",
            ),
            ("-x", "flag -x is not supported"),
            ("-itx", "flag -x is not supported"),
            (
                "--env-file /etc/app.env",
                "--env-file is not supported: it reads a file",
            ),
            ("--rm", "--rm is not supported: it deletes the container"),
            (
                "--mount type=bind,src=/a,dst=/b",
                "--mount is not supported",
            ),
            ("-P", "-P is not supported"),
            ("--publish-all", "--publish-all is not supported"),
        ] {
            let e = err(text);
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn malformed_values_and_positionals_are_refused() {
        for (text, want) in [
            ("-e FOO", "takes its value from the environment"),
            ("-e", "flag -e needs a value"),
            ("--name", "--name needs a value"),
            ("nginx", "is not a flag"),
            ("-- sleep", "is not a flag"),
            ("-v /data", "anonymous volume"),
            ("-v cache:/c:z", "not supported for named volumes"),
            ("-p 80000:80", "port"),
            ("--restart=sometimes", "restart policy"),
            ("--health-retries x", "not a whole number"),
            ("--no-healthcheck --health-cmd true", "conflicts"),
            ("--privileged=yes", "takes true or false"),
            ("-l io.mender.composable.stack=x", "reserves"),
            ("--name x", "container name"),
            ("-e 'A=1", "unterminated"),
            ("--log-opt max-size", "KEY=VALUE"),
        ] {
            let e = err(text);
            assert!(e.contains(want), "{text}: {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn no_healthcheck_and_timing_only_healthchecks() {
        let (s, _) = args("--no-healthcheck");
        assert!(s.healthcheck.unwrap().disabled());
        let (s, _) = args("--health-interval 2s");
        let h = s.healthcheck.unwrap();
        assert!(h.test.is_empty(), "keeps the image's test");
        assert_eq!(h.interval, Some(std::time::Duration::from_secs(2)));
    }
}
