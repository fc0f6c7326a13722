//! Supervision of the agent's long-running tasks: the kube-proxy task never ends on its own,
//! so if it does (a panic, most likely) the agent logs why and fails, instead of running on
//! with a node whose rules nobody programs. Start at [`until_task_ends`].

use std::future::Future;

use tokio::task::{JoinError, JoinHandle};

/// Run `work` to completion unless `task` ends first; then the error says how it ended.
pub async fn until_task_ends<W>(
    name: &str,
    task: &mut JoinHandle<()>,
    work: W,
) -> anyhow::Result<()>
where
    W: Future<Output = anyhow::Result<()>>,
{
    tokio::select! {
        r = work => r,
        ended = task => {
            let e = ended_error(name, ended);
            tracing::error!("{e:#}");
            Err(e)
        }
    }
}

/// The error for a task that should have run forever.
fn ended_error(name: &str, ended: Result<(), JoinError>) -> anyhow::Error {
    match ended {
        Err(e) if e.is_panic() => {
            let payload = e.into_panic();
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(non-text panic payload)".to_string());
            anyhow::anyhow!("{name} task panicked: {msg}")
        }
        Err(e) => anyhow::anyhow!("{name} task failed: {e}"),
        Ok(()) => anyhow::anyhow!("{name} task ended unexpectedly"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_task_fails_the_supervisor_with_its_message() {
        let mut task = tokio::spawn(async {
            panic!("proxy applier task failed: boom");
        });
        let r = until_task_ends("kube-proxy", &mut task, std::future::pending()).await;
        let msg = format!("{:#}", r.expect_err("the supervisor must fail"));
        assert!(msg.contains("kube-proxy task panicked"), "{msg}");
        assert!(msg.contains("boom"), "{msg}");
    }

    #[tokio::test]
    async fn work_that_finishes_first_is_returned() {
        let mut task = tokio::spawn(std::future::pending::<()>());
        let r = until_task_ends("kube-proxy", &mut task, async { Ok(()) }).await;
        assert!(r.is_ok());
        task.abort();
    }
}
