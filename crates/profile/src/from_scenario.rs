//! A scenario's `profile:` and `flags:` resolved into [`Configs`], every error at the
//! offending flag's `file:line:column`. Start at [`from_scenario`].

use scenario::locate::{Seg, locate, render};
use scenario::{Scenario, ScenarioError};

use crate::configs::{ConfigError, Configs};
use crate::flags::{FlagError, Flags};

/// What [`from_scenario`] says after `unknown flag --NAME: ` (the flags a scenario may set).
pub const UNKNOWN_FLAG_HINT: &str = "expected a flag of `zonelab server`, `zonelab agent` or the cluster autoscaler (see `zonelab server --help`, docs/autoscaler.md)";

/// A scenario's configs, and its flags that set no config but that the caller takes.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub configs: Configs,
    /// The typed config flags as given.
    pub flags: Flags,
    /// `(name without dashes, value)` of the flags `passthrough` accepted, in file order.
    pub passthrough: Vec<(String, String)>,
}

/// Resolve the scenario `s` (parsed from `text`, named `file` in errors): every entry of its
/// `flags:` is either a config flag ([`Flags`]; its value must parse and the component must
/// accept it), or one that `passthrough` accepts (a role's own flag, such as
/// `service-cluster-ip-range`), or an error at its line and column.
pub fn from_scenario(
    s: &Scenario,
    text: &str,
    file: &str,
    passthrough: impl Fn(&str) -> bool,
) -> Result<Resolved, ScenarioError> {
    let invalid = |name: &str, message: String| {
        let segs = [Seg::Key("flags".into()), Seg::Key(name.to_string())];
        let (line, column) = locate(text, &segs).unwrap_or((1, 1));
        ScenarioError::Invalid {
            file: file.to_string(),
            line,
            column,
            field: render(&segs),
            message,
        }
    };
    let mut flags = Flags::default();
    let mut other = Vec::new();
    for (name, value) in &s.flags {
        let bare = name.trim_start_matches('-');
        if !Flags::knows(bare) {
            if !passthrough(bare) {
                let e = FlagError::Unknown(bare.to_string());
                return Err(invalid(name, format!("{e}: {UNKNOWN_FLAG_HINT}")));
            }
            other.push((bare.to_string(), value.clone()));
            continue;
        }
        // Alone first, so a value the component refuses is reported at its own line.
        let mut one = Flags::default();
        one.set(bare, value)
            .map_err(|e| invalid(name, e.to_string()))?;
        Configs::resolve(s.profile, &one).map_err(|e: ConfigError| invalid(name, e.to_string()))?;
        flags
            .set(bare, value)
            .map_err(|e| invalid(name, e.to_string()))?;
    }
    let configs = Configs::resolve(s.profile, &flags).map_err(|e| ScenarioError::Invalid {
        file: file.to_string(),
        line: locate(text, &[Seg::Key("flags".into())]).map_or(1, |l| l.0),
        column: 1,
        field: "flags".into(),
        message: e.to_string(),
    })?;
    check_election(s, &configs, &invalid)?;
    Ok(Resolved {
        configs,
        flags,
        passthrough: other,
    })
}

/// The election timers together, as `zonelab server` checks them at start (upstream's texts),
/// unless the scenario turns leader election off; reported at the first timer flag it sets.
fn check_election(
    s: &Scenario,
    configs: &Configs,
    invalid: &dyn Fn(&str, String) -> ScenarioError,
) -> Result<(), ScenarioError> {
    let value = |name: &str| {
        s.flags
            .iter()
            .find(|(k, _)| k.trim_start_matches('-') == name)
            .map(|(k, v)| (k.as_str(), v.as_str()))
    };
    if value("leader-elect").is_some_and(|(_, v)| v == "false") {
        return Ok(());
    }
    let timer = [
        "leader-elect-lease-duration",
        "leader-elect-renew-deadline",
        "leader-elect-retry-period",
    ]
    .into_iter()
    .find_map(value);
    let Some((name, _)) = timer else {
        return Ok(());
    };
    configs
        .election
        .config("kube-system", "kube-controller-manager", "validate", 0)
        .validate()
        .map_err(|e| invalid(name, format!("invalid --leader-elect-* flags: {e}")))
}
