//! The proxy's rule applier off the async loop: `nft -f -` and `iptables-restore` block, so a
//! transaction runs on tokio's blocking pool and the applier comes back with the result.
//!
//! Start at [`apply_blocking`].

use proxy::apply::{ApplyError, RuleApplier};

/// Runs a blocking applier on tokio's blocking pool and hands it back with the result (the
/// outer error means the task itself died).
pub async fn apply_blocking<A: RuleApplier + Send + 'static>(
    mut applier: A,
    text: String,
) -> Result<(A, Result<(), ApplyError>), ApplyError> {
    tokio::task::spawn_blocking(move || {
        let r = applier.apply(&text);
        (applier, r)
    })
    .await
    .map_err(|e| ApplyError::Join(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proxy::apply::FakeApplier;

    #[tokio::test]
    async fn the_applier_comes_back_with_its_result() {
        let fake = FakeApplier {
            fail_next: 1,
            ..FakeApplier::default()
        };
        let (fake, first) = apply_blocking(fake, "add table ip a\n".into())
            .await
            .expect("task");
        assert!(matches!(first, Err(ApplyError::Injected(_))));
        let (fake, second) = apply_blocking(fake, "add table ip b\n".into())
            .await
            .expect("task");
        assert!(second.is_ok());
        assert_eq!(fake.transactions, vec!["add table ip b\n".to_string()]);
    }
}
