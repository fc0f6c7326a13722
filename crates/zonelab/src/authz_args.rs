//! `zonelab server`'s authorization flags, kube-apiserver's names: `--authorization-mode` and
//! `--enable-admission-plugins=NodeRestriction`. Start at [`AuthzArgs::apply`].

use anyhow::{Result, bail};

/// Authorization and the NodeRestriction admission plugin.
#[derive(clap::Args, Clone, Debug)]
pub struct AuthzArgs {
    /// Ordered, comma-separated authorizers: AlwaysAllow (the default, as upstream),
    /// AlwaysDeny, Node, RBAC. `system:masters` is always allowed. With RBAC the bootstrap
    /// policy (cluster-admin, system:node, view/edit/admin, …) is created at start.
    #[arg(long = "authorization-mode", default_value = "AlwaysAllow")]
    pub authorization_mode: String,
    /// Admission plugins to turn on beyond the built-in ones; only NodeRestriction is
    /// optional here (it is also on whenever the Node authorizer is).
    #[arg(long = "enable-admission-plugins", value_delimiter = ',')]
    pub enable_admission_plugins: Vec<String>,
}

impl AuthzArgs {
    /// Put the flags into the API server's config; a bad value is an error naming it.
    pub fn apply(&self, cfg: &mut apiserver::Config) -> Result<()> {
        let modes = apiserver::authz::parse_modes(&self.authorization_mode)?;
        let mut node_restriction = modes.contains(&apiserver::authz::Mode::Node);
        for plugin in self
            .enable_admission_plugins
            .iter()
            .filter(|p| !p.is_empty())
        {
            match plugin.as_str() {
                "NodeRestriction" => node_restriction = true,
                other => bail!("enable-admission-plugins plugin {other:?} is unknown"),
            }
        }
        cfg.authorization_modes = modes;
        cfg.node_restriction = node_restriction;
        Ok(())
    }
}
