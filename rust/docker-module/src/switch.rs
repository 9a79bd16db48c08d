//! ArtifactInstall: after the phase plan (an interrupted switch restored,
//! an interrupted load put back), the new set is created and started by the
//! install plan and must pass the health gate before the journal says
//! `installed`.

use docker_spec::Release;

use crate::executor::{
    new_install_id, release_images, DeployError, Deployer, PayloadSource, Result,
};
use crate::journal::{Phase, Update};
use crate::labels::Identity;
use crate::log;
use crate::plan::{self, Action, Step};

impl Deployer<'_> {
    /// ArtifactInstall: create the new set beside the old one, switch, and
    /// pass the health gate.
    ///
    /// `stored`: the payloads the client stored because Download did not
    /// stream them; inline archives still missing are loaded from there
    /// before anything stops.
    pub fn install(
        &mut self,
        release: &Release,
        stored: Option<&mut dyn PayloadSource>,
    ) -> Result<()> {
        let images = release_images(release);
        let pinned: Vec<String> = images.iter().map(|i| i.pinned()).collect();
        let list = self.run_steps(Action::Install, &pinned)?;
        if !list.contains(&Step::Switch) {
            log!("release {} is already installed", self.artifact);
            return Ok(());
        }
        // The policy may have been tightened since Download.
        crate::policy::enforce(release, self.config, &self.engine.containers()?)?;
        // Removed since Download, a secret would be mounted as an empty directory.
        crate::executor::check_device_files(release, self.config)?;
        if let Some(source) = stored {
            self.load_inline(release, source)?;
        }
        for image in &images {
            match self.engine.image(&image.pinned())? {
                Some(found) if found.has_digest(image) => {}
                _ => {
                    return Err(DeployError::Refused(format!(
                        "image {image} is not on the device; Download fetches it, so run the whole deployment again"
                    )))
                }
            }
        }
        let containers = self.engine.containers()?;
        let install_id = new_install_id();
        let plan = plan::install(release, &install_id, &containers)?;
        for r in &plan.missing_replaced {
            log!("replaces lists {r}, but no such container exists; nothing to take over");
        }
        if let Some(why) = &plan.fallback {
            log!("start-first is not possible ({why}); using stop-first");
        }
        log!(
            "installing {} of stack {} ({}, install {install_id}): {} old container(s), {} kept",
            self.artifact,
            release.stack,
            plan.strategy.as_str(),
            plan.old.len(),
            plan.kept.len()
        );

        let artifact = self.artifact.to_owned();
        let mut update = match self.journal.state.update.take() {
            Some(u) if u.artifact == artifact => u,
            _ => Update::new(&artifact),
        };
        update.phase = Phase::Install;
        update.images = pinned;
        update.install_id = Some(install_id.clone());
        update.strategy = Some(plan.strategy.as_str().to_owned());
        update.old = plan.old.clone();
        update.kept = plan.kept.clone();
        update.purge_volumes = plan.purge_volumes.clone();
        self.journal.state.update = Some(update);
        self.save("install")?;
        self.journal.reserve()?;
        self.ensure_networks(release)?;

        let timeout = release.health_timeout.unwrap_or(self.config.health_timeout);
        let identity = Identity {
            stack: &release.stack,
            release: self.artifact,
            install_id: &install_id,
        };
        self.execute(&plan.ops, &containers, Some((release, &identity)), timeout)?;
        self.update().phase = Phase::Installed;
        self.save("installed")?;
        log!(
            "release {} of stack {} is up; waiting for commit",
            self.artifact,
            release.stack
        );
        Ok(())
    }
}
