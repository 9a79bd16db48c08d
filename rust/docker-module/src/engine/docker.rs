//! The engine seam over bollard and the engine's unix socket. A module is one
//! short process per state, so each call blocks on a small current-thread
//! runtime instead of making the module async.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, DeviceMapping, EndpointSettings, HealthConfig,
    HealthStatusEnum, HostConfig, HostConfigLogConfig, NetworkingConfig, PortBinding,
    ResourcesUlimits, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ImportImageOptions,
    ListContainersOptionsBuilder, ListImagesOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveImageOptionsBuilder, RemoveVolumeOptionsBuilder, RenameContainerOptionsBuilder,
    StopContainerOptionsBuilder, TagImageOptionsBuilder,
};
use bollard::Docker;
use bytes::Bytes;
use futures_util::StreamExt;
use mender_module_protocol::signal;
use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};
use tokio::runtime::Runtime;

use super::{
    Container, CreateRequest, Credentials, DataRoot, Engine, EngineError, ErrorKind, Health, Image,
    ImageEntry, MountUse, Network, NetworkRequest, Result,
};
use crate::fault;
use docker_spec::{ContainerSpec, ImageRef};

pub struct DockerEngine {
    runtime: Runtime,
    docker: Docker,
    socket: String,
    timeout: Duration,
}

/// Polls every future until all are done; the outputs in order. A few
/// requests at a time need none of the machinery of futures' `join_all`,
/// which costs tens of KiB on small flash.
async fn join_all<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<_> = futures
        .map(|f| Box::pin(futures_util::future::maybe_done(f)))
        .collect();
    futures_util::future::poll_fn(|cx| {
        let mut done = true;
        for f in pending.iter_mut() {
            done &= std::future::Future::poll(f.as_mut(), cx).is_ready();
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    pending
        .iter_mut()
        .map(|f| f.as_mut().take_output().expect("every future is done"))
        .collect()
}

fn kind_of(e: &BollardError) -> ErrorKind {
    match e {
        BollardError::DockerResponseServerError {
            status_code: 404, ..
        } => ErrorKind::NotFound,
        BollardError::DockerResponseServerError {
            status_code: 409, ..
        } => ErrorKind::Conflict,
        BollardError::DockerResponseServerError { .. } | BollardError::DockerStreamError { .. } => {
            ErrorKind::Other
        }
        BollardError::SocketNotFoundError(_)
        | BollardError::HyperResponseError { .. }
        | BollardError::RequestTimeoutError
        | BollardError::IOError { .. } => ErrorKind::Unreachable,
        _ => ErrorKind::Other,
    }
}

fn message_of(e: &BollardError) -> String {
    match e {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => format!("{} (HTTP {status_code})", message.trim()),
        BollardError::DockerStreamError { error } => error.trim().to_owned(),
        other => other.to_string(),
    }
}

fn err<'a>(op: &'static str, target: &'a str) -> impl FnOnce(BollardError) -> EngineError + 'a {
    move |e| EngineError::new(op, target, kind_of(&e), message_of(&e))
}

/// Turns "already gone" into success.
fn gone_ok(r: Result<()>) -> Result<()> {
    match r {
        Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

impl DockerEngine {
    fn root_dir(&self) -> Result<PathBuf> {
        super::info::docker_root_dir(&self.socket, self.timeout).map_err(|e| {
            EngineError::new("query the data root of", &self.socket, ErrorKind::Other, e)
        })
    }

    /// Connects to `socket` (a path) and settles the API version with the
    /// engine, so that a 20.10 engine (API 1.41) and a 25.x one both work.
    pub fn connect(socket: &str, request_timeout: Duration) -> Result<DockerEngine> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                EngineError::new("start", "the I/O runtime", ErrorKind::Other, e.to_string())
            })?;
        let unreachable = |e: BollardError| {
            EngineError::new(
                "connect to",
                socket,
                ErrorKind::Unreachable,
                format!("{}; is dockerd running, and is \"socket\" in the module's configuration right?", message_of(&e)),
            )
        };
        let docker = Docker::connect_with_unix(
            socket,
            request_timeout.as_secs().max(1),
            bollard::API_DEFAULT_VERSION,
        )
        .map_err(unreachable)?;
        let docker = runtime
            .block_on(docker.negotiate_version())
            .map_err(unreachable)?;
        Ok(DockerEngine {
            runtime,
            docker,
            socket: socket.to_owned(),
            timeout: request_timeout,
        })
    }

    fn networks(&self) -> super::network::Client<'_> {
        super::network::Client {
            socket: &self.socket,
            timeout: self.timeout,
        }
    }

    fn inspect(&self, id_or_name: &str) -> Result<Option<Container>> {
        match self
            .runtime
            .block_on(self.docker.inspect_container(id_or_name, None))
        {
            Ok(c) => Ok(Some(container_from(c))),
            Err(e) if kind_of(&e) == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(err("inspect container", id_or_name)(e)),
        }
    }
}

fn container_from(c: ContainerInspectResponse) -> Container {
    let mut out = Container::new(
        c.id.as_deref().unwrap_or_default(),
        c.name
            .as_deref()
            .unwrap_or_default()
            .trim_start_matches('/'),
    );
    out.image_id = c.image.unwrap_or_default();
    out.restart_count = c.restart_count.unwrap_or(0).max(0) as u64;
    if let Some(config) = c.config {
        out.labels = config.labels.unwrap_or_default().into_iter().collect();
    }
    if let Some(state) = c.state {
        out.running = state.running.unwrap_or(false);
        out.restarting = state.restarting.unwrap_or(false);
        out.exit_code = state.exit_code.unwrap_or(0);
        if let Some(health) = state.health {
            out.health = match health.status {
                Some(HealthStatusEnum::STARTING) => Health::Starting,
                Some(HealthStatusEnum::HEALTHY) => Health::Healthy,
                Some(HealthStatusEnum::UNHEALTHY) => {
                    let last = health
                        .log
                        .unwrap_or_default()
                        .into_iter()
                        .last()
                        .and_then(|r| r.output)
                        .unwrap_or_default();
                    Health::Unhealthy(last.split_whitespace().collect::<Vec<_>>().join(" "))
                }
                _ => Health::None,
            };
        }
    }
    if let Some(hc) = c.host_config {
        out.network_mode = hc.network_mode.unwrap_or_default();
        for (port, bindings) in hc.port_bindings.unwrap_or_default() {
            let proto = port.split_once('/').map_or("tcp", |(_, p)| p).to_owned();
            for b in bindings.unwrap_or_default() {
                if let Some(Ok(p)) = b.host_port.as_deref().map(str::parse::<u16>) {
                    out.published.push((p, proto.clone()));
                }
            }
        }
        out.published.sort();
        out.devices = hc
            .devices
            .unwrap_or_default()
            .into_iter()
            .filter_map(|d| d.path_on_host)
            .collect();
    }
    for m in c.mounts.unwrap_or_default() {
        let named = m.name.is_some();
        let source = match m.name {
            Some(n) => n,
            None => m.source.unwrap_or_default(),
        };
        out.mounts.push(MountUse {
            source,
            named_volume: named,
            read_write: m.rw.unwrap_or(true),
        });
    }
    out
}

/// `REPO:TAG` → (`REPO`, `TAG`); the tag follows the last `:` after the last
/// `/` (a registry's port is not a tag).
fn split_tag(reference: &str) -> (&str, &str) {
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (reference, "latest"),
    }
}

fn nanos(d: Option<Duration>) -> Option<i64> {
    d.map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// The create body the engine's API takes for one spec.
pub fn create_body(spec: &ContainerSpec, labels: &HashMap<String, String>) -> ContainerCreateBody {
    let first_network = spec.networks.iter().next();
    let mut binds: Vec<String> = spec.binds.iter().map(|b| b.to_engine()).collect();
    for v in &spec.volumes {
        binds.push(if v.read_only {
            format!("{}:{}:ro", v.name, v.target)
        } else {
            format!("{}:{}", v.name, v.target)
        });
    }
    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    let mut exposed = Vec::new();
    for p in &spec.ports {
        let key = format!("{}/{}", p.container_port, p.protocol);
        if !exposed.contains(&key) {
            exposed.push(key.clone());
        }
        if let Some(host) = p.host_port {
            port_bindings
                .entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: p.host_ip.clone(),
                    host_port: Some(host.to_string()),
                });
        }
    }
    let restart = match spec.restart {
        docker_spec::RestartPolicy::No => RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        },
        docker_spec::RestartPolicy::Always => RestartPolicy {
            name: Some(RestartPolicyNameEnum::ALWAYS),
            maximum_retry_count: None,
        },
        docker_spec::RestartPolicy::UnlessStopped => RestartPolicy {
            name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
            maximum_retry_count: None,
        },
        docker_spec::RestartPolicy::OnFailure(n) => RestartPolicy {
            name: Some(RestartPolicyNameEnum::ON_FAILURE),
            maximum_retry_count: n.map(i64::from),
        },
    };
    let host_config = HostConfig {
        binds: (!binds.is_empty()).then_some(binds),
        port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
        // A container on stack networks is created on the first; the
        // executor connects the others before it starts.
        network_mode: first_network
            .map(|(n, _)| n.clone())
            .or_else(|| spec.network_mode.clone()),
        restart_policy: Some(restart),
        privileged: Some(spec.privileged),
        cap_add: (!spec.cap_add.is_empty()).then(|| spec.cap_add.clone()),
        cap_drop: (!spec.cap_drop.is_empty()).then(|| spec.cap_drop.clone()),
        devices: (!spec.devices.is_empty()).then(|| {
            spec.devices
                .iter()
                .map(|d| DeviceMapping {
                    path_on_host: Some(d.host.clone()),
                    path_in_container: Some(d.container.clone()),
                    cgroup_permissions: Some(d.permissions.clone()),
                })
                .collect()
        }),
        readonly_rootfs: Some(spec.read_only),
        tmpfs: (!spec.tmpfs.is_empty()).then(|| {
            spec.tmpfs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }),
        log_config: spec.log.as_ref().map(|l| HostConfigLogConfig {
            typ: Some(l.driver.clone()),
            config: Some(
                l.options
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
        }),
        memory: spec
            .memory_bytes
            .map(|m| i64::try_from(m).unwrap_or(i64::MAX)),
        nano_cpus: spec.nano_cpus.map(|c| i64::try_from(c).unwrap_or(i64::MAX)),
        sysctls: (!spec.sysctls.is_empty()).then(|| {
            spec.sysctls
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }),
        init: spec.init,
        extra_hosts: (!spec.extra_hosts.is_empty()).then(|| spec.extra_hosts.clone()),
        dns: (!spec.dns.is_empty()).then(|| spec.dns.clone()),
        ulimits: (!spec.ulimits.is_empty()).then(|| {
            spec.ulimits
                .iter()
                .map(|(name, l)| ResourcesUlimits {
                    name: Some(name.clone()),
                    soft: Some(l.soft),
                    hard: Some(l.hard),
                })
                .collect()
        }),
        shm_size: spec
            .shm_size_bytes
            .map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(spec.image.pinned()),
        cmd: spec.command.clone(),
        entrypoint: spec.entrypoint.clone(),
        env: (!spec.env.is_empty())
            .then(|| spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(labels.clone()),
        user: spec.user.clone(),
        working_dir: spec.workdir.clone(),
        hostname: spec.hostname.clone(),
        tty: Some(spec.tty),
        open_stdin: Some(spec.open_stdin),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        healthcheck: spec.healthcheck.as_ref().map(|h| HealthConfig {
            test: (!h.test.is_empty()).then(|| h.test.clone()),
            interval: nanos(h.interval),
            timeout: nanos(h.timeout),
            start_period: nanos(h.start_period),
            retries: h.retries.map(i64::from),
            start_interval: None,
        }),
        stop_signal: spec.stop_signal.clone(),
        // The engine keeps it as the container's own stop timeout, which
        // `stop_all` reads back for the module's stops.
        stop_timeout: spec
            .stop_grace_period
            .map(|g| i64::try_from(g.as_secs()).unwrap_or(i64::MAX)),
        host_config: Some(host_config),
        networking_config: first_network.map(|(network, aliases)| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                network.clone(),
                EndpointSettings {
                    aliases: Some(aliases.clone()),
                    ..Default::default()
                },
            )])),
        }),
        ..Default::default()
    }
}

impl Engine for DockerEngine {
    fn containers(&mut self) -> Result<Vec<Container>> {
        let options = ListContainersOptionsBuilder::default().all(true).build();
        let list = self
            .runtime
            .block_on(self.docker.list_containers(Some(options)))
            .map_err(err("list containers on", &self.socket))?;
        let mut out = Vec::new();
        for summary in list {
            let Some(id) = summary.id else { continue };
            // A container removed between the list and the inspect is simply gone.
            if let Some(c) = self.inspect(&id)? {
                out.push(c);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn container(&mut self, id_or_name: &str) -> Result<Option<Container>> {
        self.inspect(id_or_name)
    }

    fn image(&mut self, reference: &str) -> Result<Option<Image>> {
        match self.runtime.block_on(self.docker.inspect_image(reference)) {
            Ok(i) => Ok(Some(Image {
                id: i.id.unwrap_or_default(),
                repo_digests: i.repo_digests.unwrap_or_default(),
                layers: i.root_fs.and_then(|r| r.layers).unwrap_or_default(),
            })),
            Err(e) if kind_of(&e) == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(err("inspect image", reference)(e)),
        }
    }

    fn image_ids(&mut self) -> Result<BTreeSet<String>> {
        let options = ListImagesOptionsBuilder::default().all(true).build();
        let list = self
            .runtime
            .block_on(self.docker.list_images(Some(options)))
            .map_err(err("list", "the images"))?;
        Ok(list.into_iter().map(|i| i.id).collect())
    }

    fn load(&mut self, archive: &mut dyn Read) -> Result<Vec<String>> {
        const CHUNK: usize = 256 * 1024;
        const TARGET: &str = "an inline image archive";
        // A few chunks in flight: memory stays flat whatever the image size.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
        let body = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        // The upload lasts as long as the client's download, which may be a
        // slow link: no request timeout here, the client has its own.
        let docker = self
            .docker
            .clone()
            .with_timeout(Duration::from_secs(30 * 24 * 3600));
        let options = ImportImageOptions {
            quiet: true,
            platform: None,
        };
        let runtime = &self.runtime;
        std::thread::scope(|scope| {
            // The request runs beside; this thread keeps reading the payload,
            // so a SIGTERM (blocked over there) interrupts the read here.
            let request = scope.spawn(move || {
                let mut stop = SigSet::empty();
                stop.add(Signal::SIGTERM);
                stop.add(Signal::SIGINT);
                let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&stop), None);
                runtime.block_on(async {
                    let mut stream = docker.import_image_stream(options, body, None);
                    let mut loaded = Vec::new();
                    loop {
                        let next =
                            tokio::time::timeout(Duration::from_millis(250), stream.next()).await;
                        if signal::terminated() {
                            return Err(EngineError::new(
                                "load",
                                TARGET,
                                ErrorKind::Other,
                                "stopped by SIGTERM; the load was abandoned",
                            ));
                        }
                        match next {
                            Err(_) => continue,
                            Ok(None) => return Ok(loaded),
                            Ok(Some(Err(e))) => return Err(err("load", TARGET)(e)),
                            Ok(Some(Ok(info))) => {
                                for line in info.stream.unwrap_or_default().lines() {
                                    let line = line.trim();
                                    if let Some(id) = line.strip_prefix("Loaded image ID: ") {
                                        loaded.push(id.trim().to_owned());
                                    } else if let Some(name) = line.strip_prefix("Loaded image: ") {
                                        // Not expected (tags are stripped); never an ID, so
                                        // verification names it.
                                        loaded.push(format!("tagged {}", name.trim()));
                                    }
                                }
                            }
                        }
                    }
                })
            });
            let mut read: std::io::Result<()> = Ok(());
            // One buffer, filled to the brim before each send: few large
            // chunks, no zero-filling per chunk.
            let mut buf = vec![0u8; CHUNK];
            'body: loop {
                let mut filled = 0;
                while filled < CHUNK {
                    match archive.read(&mut buf[filled..]) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) => {
                            let _ =
                                tx.blocking_send(Err(std::io::Error::new(e.kind(), e.to_string())));
                            read = Err(e);
                            break 'body;
                        }
                    }
                }
                if filled == 0 {
                    break;
                }
                if tx
                    .blocking_send(Ok(Bytes::copy_from_slice(&buf[..filled])))
                    .is_err()
                {
                    // The engine stopped reading: its answer says why.
                    break;
                }
                fault::point("mid-load");
                if filled < CHUNK {
                    break;
                }
            }
            // End of body.
            drop(tx);
            if read.is_ok() {
                // Test builds: let the I/O thread finish the body first, so a
                // kill here leaves the engine the whole archive and a load it
                // completes on its own.
                #[cfg(feature = "fault-injection")]
                std::thread::sleep(Duration::from_millis(300));
                fault::point("load-sent");
            }
            let answer = request.join().unwrap_or_else(|_| {
                Err(EngineError::new(
                    "load",
                    TARGET,
                    ErrorKind::Other,
                    "the request thread panicked",
                ))
            });
            match read {
                // The archive's own problem is the cause; the engine only saw a broken upload.
                Err(e) => Err(EngineError::new(
                    "load",
                    TARGET,
                    ErrorKind::Other,
                    e.to_string(),
                )),
                Ok(()) => answer,
            }
        })
    }

    fn pull(&mut self, image: &ImageRef, credentials: Option<&Credentials>) -> Result<()> {
        let pinned = image.pinned();
        let options = CreateImageOptionsBuilder::default()
            .from_image(&image.repository)
            .tag(&image.digest)
            .build();
        let auth = credentials.map(|c| bollard::auth::DockerCredentials {
            username: Some(c.username.clone()),
            password: Some(c.password.clone()),
            serveraddress: Some(c.address.clone()),
            ..Default::default()
        });
        let docker = &self.docker;
        self.runtime.block_on(async {
            let mut stream = docker.create_image(Some(options), None, auth);
            let mut progressed = false;
            loop {
                // Wake up now and then: a SIGTERM must end a pull that stalls.
                let next = tokio::time::timeout(Duration::from_millis(250), stream.next()).await;
                if signal::terminated() {
                    return Err(EngineError::new(
                        "pull",
                        &pinned,
                        ErrorKind::Other,
                        "stopped by SIGTERM; the pull was abandoned",
                    ));
                }
                match next {
                    Err(_) => continue,
                    Ok(None) => return Ok(()),
                    Ok(Some(Err(e))) => return Err(err("pull", &pinned)(e)),
                    Ok(Some(Ok(info))) => {
                        if !progressed && info.progress_detail.is_some() {
                            progressed = true;
                            fault::point("mid-pull");
                        }
                    }
                }
            }
        })
    }

    fn create(&mut self, request: &CreateRequest) -> Result<String> {
        let labels: HashMap<String, String> = request
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let body = create_body(&request.spec, &labels);
        let options = CreateContainerOptionsBuilder::default()
            .name(&request.name)
            .build();
        let created = self
            .runtime
            .block_on(self.docker.create_container(Some(options), body))
            .map_err(err("create container", &request.name))?;
        Ok(created.id)
    }

    // One code path for one container and for many: each bollard call
    // monomorphised once keeps the binary small.
    fn start(&mut self, id_or_name: &str) -> Result<()> {
        let mut results = self.start_all(&[id_or_name.to_owned()]);
        results.pop().expect("one result per target")
    }

    fn stop(&mut self, id_or_name: &str, timeout: Duration) -> Result<()> {
        let mut results = self.stop_all(&[id_or_name.to_owned()], timeout);
        results.pop().expect("one result per target")
    }

    fn start_all(&mut self, targets: &[String]) -> Vec<Result<()>> {
        let docker = &self.docker;
        self.runtime
            .block_on(join_all(targets.iter().map(|t| async move {
                docker
                    .start_container(t, None)
                    .await
                    .map_err(err("start container", t))
            })))
    }

    fn stop_all(&mut self, targets: &[String], timeout: Duration) -> Vec<Result<()>> {
        let docker = &self.docker;
        let request_timeout = self.timeout;
        self.runtime
            .block_on(join_all(targets.iter().map(|t| async move {
                // A container created with its own grace period
                // (stop_grace_period_seconds) carries it as the engine's
                // Config.StopTimeout, foreign ones as `docker run
                // --stop-timeout` set it: that wins over the default. A
                // failed inspect leaves the default; the stop says what is
                // wrong.
                let grace = match docker.inspect_container(t, None).await {
                    Ok(c) => c
                        .config
                        .and_then(|c| c.stop_timeout)
                        .and_then(|s| u64::try_from(s).ok())
                        .map_or(timeout, Duration::from_secs),
                    Err(_) => timeout,
                };
                let secs = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
                let options = StopContainerOptionsBuilder::default().t(secs).build();
                // The request may last the grace period: as much longer than
                // usual as the grace period is longer than the default.
                let docker = docker
                    .clone()
                    .with_timeout(request_timeout + grace.saturating_sub(timeout));
                match docker.stop_container(t, Some(options)).await {
                    // 304: already stopped.
                    Err(BollardError::DockerResponseServerError {
                        status_code: 304, ..
                    }) => Ok(()),
                    other => other.map_err(err("stop container", t)),
                }
            })))
    }

    fn rename(&mut self, id_or_name: &str, new_name: &str) -> Result<()> {
        let options = RenameContainerOptionsBuilder::default()
            .name(new_name)
            .build();
        self.runtime
            .block_on(self.docker.rename_container(id_or_name, options))
            .map_err(err("rename container", id_or_name))
    }

    fn remove_container(&mut self, id_or_name: &str) -> Result<()> {
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        gone_ok(
            self.runtime
                .block_on(self.docker.remove_container(id_or_name, Some(options)))
                .map_err(err("remove container", id_or_name)),
        )
    }

    fn remove_image(&mut self, reference: &str) -> Result<()> {
        let options = RemoveImageOptionsBuilder::default().build();
        gone_ok(
            self.runtime
                .block_on(self.docker.remove_image(reference, Some(options), None))
                .map(|_| ())
                .map_err(err("remove image", reference)),
        )
    }

    fn remove_volume(&mut self, name: &str) -> Result<()> {
        let options = RemoveVolumeOptionsBuilder::default().build();
        gone_ok(
            self.runtime
                .block_on(self.docker.remove_volume(name, Some(options)))
                .map_err(err("remove volume", name)),
        )
    }

    fn images(&mut self) -> Result<Vec<ImageEntry>> {
        let options = ListImagesOptionsBuilder::default()
            .all(true)
            .digests(true)
            .build();
        let list = self
            .runtime
            .block_on(self.docker.list_images(Some(options)))
            .map_err(err("list", "the images"))?;
        // Engines before API 1.43 spell "no name" as <none>:<none>.
        let named = |v: Vec<String>| -> Vec<String> {
            v.into_iter().filter(|n| !n.starts_with("<none>")).collect()
        };
        Ok(list
            .into_iter()
            .map(|i| ImageEntry {
                id: i.id,
                tags: named(i.repo_tags),
                digests: named(i.repo_digests),
            })
            .collect())
    }

    fn tag(&mut self, id: &str, tag: &str) -> Result<()> {
        let (repo, name) = split_tag(tag);
        let options = TagImageOptionsBuilder::default()
            .repo(repo)
            .tag(name)
            .build();
        self.runtime
            .block_on(self.docker.tag_image(id, Some(options)))
            .map_err(err("tag image", id))
    }

    fn remove_image_forced(&mut self, id: &str) -> Result<()> {
        let options = RemoveImageOptionsBuilder::default().force(true).build();
        gone_ok(
            self.runtime
                .block_on(self.docker.remove_image(id, Some(options), None))
                .map(|_| ())
                .map_err(err("remove image", id)),
        )
    }

    /// The engine extracts an archive it loads into `docker-import-*` under
    /// `<data root>/tmp` and removes that when the load has ended, whether
    /// the client is still there or not.
    fn stack_networks(&mut self, stack: &str) -> Result<Vec<Network>> {
        self.networks().list(crate::labels::STACK, stack)
    }

    fn network_exists(&mut self, name: &str) -> Result<bool> {
        self.networks().exists(name)
    }

    fn create_network(&mut self, request: &NetworkRequest) -> Result<()> {
        self.networks().create(request)
    }

    fn connect_network(
        &mut self,
        network: &str,
        container: &str,
        aliases: &[String],
    ) -> Result<()> {
        self.networks().connect(network, container, aliases)
    }

    fn remove_network(&mut self, name: &str) -> Result<()> {
        self.networks().remove(name)
    }

    fn loads_in_progress(&mut self) -> Result<Option<bool>> {
        let tmp = self.root_dir()?.join("tmp");
        let Ok(entries) = std::fs::read_dir(&tmp) else {
            return Ok(None);
        };
        Ok(Some(entries.flatten().any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("docker-import-")
        })))
    }

    fn data_root(&mut self) -> Result<DataRoot> {
        let path = self.root_dir()?;
        // The statvfs field types differ between targets (u32 on some 32-bit ones).
        #[allow(clippy::unnecessary_cast)]
        let free_bytes = nix::sys::statvfs::statvfs(&path)
            .ok()
            .map(|s| (s.blocks_available() as u64).saturating_mul(s.fragment_size() as u64));
        Ok(DataRoot { path, free_bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// The create request as the engine receives it.
    fn wire(container: Value) -> Value {
        let meta = json!({"docker-stack": {"format": 1, "stack": "web", "containers": {"web": container}}});
        let release = docker_spec::parse(&meta).unwrap();
        serde_json::to_value(create_body(&release.containers[0], &HashMap::new())).unwrap()
    }

    const IMAGE: &str =
        "app@sha256:1111111111111111111111111111111111111111111111111111111111111111";

    #[test]
    fn the_compose_keys_reach_the_engines_create_request() {
        let body = wire(json!({"image": IMAGE,
            "stop_signal": "SIGQUIT", "stop_grace_period_seconds": 45,
            "sysctls": {"net.core.somaxconn": "1024"}, "init": true,
            "extra_hosts": ["db.local=10.0.0.2", "v6.local:[::1]"], "dns": ["10.0.0.53"],
            "ulimits": {"nofile": "1024:4096", "nproc": 512}, "shm_size_bytes": 134217728}));
        assert_eq!(body["StopSignal"], "SIGQUIT");
        assert_eq!(body["StopTimeout"], 45);
        let host = &body["HostConfig"];
        assert_eq!(host["Sysctls"], json!({"net.core.somaxconn": "1024"}));
        assert_eq!(host["Init"], true);
        assert_eq!(
            host["ExtraHosts"],
            json!(["db.local:10.0.0.2", "v6.local:::1"])
        );
        assert_eq!(host["Dns"], json!(["10.0.0.53"]));
        assert_eq!(
            host["Ulimits"],
            json!([{"Name": "nofile", "Soft": 1024, "Hard": 4096},
                   {"Name": "nproc", "Soft": 512, "Hard": 512}])
        );
        assert_eq!(host["ShmSize"], 134217728);
        assert_eq!(
            wire(json!({"image": IMAGE, "init": false}))["HostConfig"]["Init"],
            false,
            "an explicit false overrides an engine that adds an init"
        );
    }

    #[test]
    fn without_the_compose_keys_the_engine_keeps_its_defaults() {
        let body = wire(json!({"image": IMAGE}));
        for key in ["StopSignal", "StopTimeout"] {
            assert!(body.get(key).is_none(), "{key}: {body}");
        }
        for key in ["Sysctls", "Init", "ExtraHosts", "Dns", "Ulimits", "ShmSize"] {
            assert!(body["HostConfig"].get(key).is_none(), "{key}: {body}");
        }
    }
}
