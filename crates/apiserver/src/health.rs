//! `/healthz`, `/livez` and `/readyz` as upstream's apiserver answers them: named checks
//! (`ping`, `log`, `etcd`, and for readiness `etcd-readiness`), `ok` when all pass, and on a
//! failure HTTP 500 with one `[+]name ok` / `[-]name failed: reason withheld` line per check.
//!
//! Start at [`Probe::check`] (runs the store check, bounded by the store's health timeout) and
//! [`render`] (pure).

use store::Store;

/// Which endpoint was asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    Healthz,
    Livez,
    Readyz,
}

impl Probe {
    fn name(self) -> &'static str {
        match self {
            Probe::Healthz => "healthz",
            Probe::Livez => "livez",
            Probe::Readyz => "readyz",
        }
    }

    /// Runs every check of this probe and renders the answer: (HTTP code, body).
    pub async fn check(self, store: &dyn Store, verbose: bool) -> (u16, String) {
        let etcd = store.health().await;
        if let Err(e) = &etcd {
            tracing::warn!("{} check etcd failed: {e}", self.name());
        }
        let ok = etcd.is_ok();
        let mut checks = vec![("ping", true), ("log", true), ("etcd", ok)];
        if self == Probe::Readyz {
            checks.push(("etcd-readiness", ok));
        }
        render(self, &checks, verbose)
    }
}

/// The answer for check results `checks` (name, passed).
pub fn render(probe: Probe, checks: &[(&str, bool)], verbose: bool) -> (u16, String) {
    let failed = checks.iter().any(|(_, ok)| !ok);
    if !failed && !verbose {
        return (200, "ok".to_string());
    }
    let mut out = String::new();
    for (name, ok) in checks {
        if *ok {
            out.push_str(&format!("[+]{name} ok\n"));
        } else {
            out.push_str(&format!("[-]{name} failed: reason withheld\n"));
        }
    }
    let verdict = if failed { "failed" } else { "passed" };
    out.push_str(&format!("{} check {verdict}\n", probe.name()));
    (if failed { 500 } else { 200 }, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn healthy_store_is_ok() {
        let s = store::MemStore::new();
        assert_eq!(Probe::Readyz.check(&s, false).await, (200, "ok".into()));
        let (code, body) = Probe::Livez.check(&s, true).await;
        assert_eq!(code, 200);
        assert_eq!(
            body,
            "[+]ping ok\n[+]log ok\n[+]etcd ok\nlivez check passed\n"
        );
    }

    #[test]
    fn a_failed_check_is_500_and_listed() {
        let checks = [("ping", true), ("etcd", false), ("etcd-readiness", false)];
        let (code, body) = render(Probe::Readyz, &checks, false);
        assert_eq!(code, 500);
        assert_eq!(
            body,
            "[+]ping ok\n[-]etcd failed: reason withheld\n[-]etcd-readiness failed: reason withheld\nreadyz check failed\n"
        );
    }
}
