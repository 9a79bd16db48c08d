//! `mender-docker-module`, installed on devices as
//! `/usr/share/mender/modules/v3/docker`.

use std::process::ExitCode;

fn main() -> ExitCode {
    module_kit::fault::init(docker_module::fault::ENV);
    mender_module_protocol::run("docker", docker_module::DockerModule)
}
