//! When a watch may report progress (sans-IO): a `request_progress` becomes an etcd progress
//! request, and the revision of its answer is reported only after a second round trip. Start
//! at [`ProgressRounds`].
//!
//! Why two rounds: etcd 3.4 may answer a progress request ahead of events it has already queued
//! for the stream. Events queued before the first answer are sent before the second answer
//! (the stream's sender has drained them while the second request travelled), so the first
//! answer's revision is then safe to report. A header-only answer with no request outstanding
//! is etcd's periodic progress notification, which etcd sends only for a synced watch.

use crate::Revision;

/// Where a progress request stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum State {
    #[default]
    Idle,
    /// Sent; waiting for the first answer. `again`: another request came meanwhile.
    First { again: bool },
    /// The first answer said `revision`; waiting for the second.
    Second { revision: Revision, again: bool },
}

/// What the watch task does after an input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Step {
    /// Send etcd a progress request.
    pub send_request: bool,
    /// Report `Progress(revision)` to the watcher.
    pub report: Option<Revision>,
}

/// The progress protocol of one watch stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ProgressRounds {
    state: State,
}

impl ProgressRounds {
    /// The watcher's store asked for progress.
    pub(crate) fn requested(&mut self) -> Step {
        let (state, send_request) = match self.state {
            State::Idle => (State::First { again: false }, true),
            State::First { .. } => (State::First { again: true }, false),
            State::Second { revision, .. } => (
                State::Second {
                    revision,
                    again: true,
                },
                false,
            ),
        };
        self.state = state;
        Step {
            send_request,
            report: None,
        }
    }

    /// etcd answered with a header only (no events) at `revision`.
    pub(crate) fn header_only(&mut self, revision: Revision) -> Step {
        match self.state {
            State::Idle => Step {
                send_request: false,
                report: Some(revision),
            },
            State::First { again } => {
                self.state = State::Second { revision, again };
                Step {
                    send_request: true,
                    report: None,
                }
            }
            State::Second {
                revision: safe,
                again,
            } => {
                self.state = State::Idle;
                let next = if again {
                    self.requested()
                } else {
                    Step::default()
                };
                Step {
                    send_request: next.send_request,
                    report: Some(safe),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(send_request: bool, report: Option<Revision>) -> Step {
        Step {
            send_request,
            report,
        }
    }

    #[test]
    fn a_request_reports_the_first_answer_after_the_second() {
        let mut p = ProgressRounds::default();
        assert_eq!(p.requested(), step(true, None));
        assert_eq!(p.header_only(7), step(true, None));
        assert_eq!(p.header_only(9), step(false, Some(7)));
        // Back to idle: a header-only answer now is a periodic notification.
        assert_eq!(p.header_only(12), step(false, Some(12)));
    }

    #[test]
    fn requests_during_a_round_start_one_more_round() {
        let mut p = ProgressRounds::default();
        assert_eq!(p.requested(), step(true, None));
        assert_eq!(p.requested(), step(false, None), "coalesced");
        assert_eq!(p.header_only(3), step(true, None));
        assert_eq!(p.requested(), step(false, None), "still coalesced");
        assert_eq!(
            p.header_only(4),
            step(true, Some(3)),
            "reports and starts anew"
        );
        assert_eq!(p.header_only(5), step(true, None));
        assert_eq!(p.header_only(6), step(false, Some(5)));
    }
}
