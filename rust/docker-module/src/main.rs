//! `mender-docker-module`, installed on devices as
//! `/usr/share/mender/modules/v3/docker`.

use std::process::ExitCode;

fn main() -> ExitCode {
    module_kit::fault::init(docker_module::fault::ENV);
    // Not a client state: the boot-time recovery (a client calls states by
    // their CamelCase names and ignores nothing else it sends).
    if std::env::args_os().nth(1).as_deref() == Some("recover".as_ref()) {
        return mender_module_protocol::run_standalone("docker", docker_module::recover_at_boot);
    }
    mender_module_protocol::run("docker", docker_module::DockerModule)
}
