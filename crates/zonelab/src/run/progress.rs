//! The run's progress display: one redrawn line on a terminal, a plain line every 10 s
//! otherwise (logs, CI).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use super::clients::Tail;

/// Draws progress to stderr.
pub struct Progress {
    tty: bool,
    last_plain: Option<Instant>,
    width: usize,
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            last_plain: None,
            width: 28,
        }
    }

    /// Shows the state at `elapsed` of at most `limit`.
    pub fn update(&mut self, elapsed: Duration, limit: Duration, tail: &Tail, phase: &str) {
        let frac = (elapsed.as_secs_f64() / limit.as_secs_f64().max(1e-9)).clamp(0.0, 1.0);
        let text = format!(
            "{:>6.1}s/{:.0}s  ok {}  failed {}  (last second: {}/{} failed)  {}",
            elapsed.as_secs_f64(),
            limit.as_secs_f64(),
            tail.ok,
            tail.failed,
            tail.recent_failed,
            tail.recent_total,
            phase
        );
        let mut err = std::io::stderr();
        if self.tty {
            let filled = (frac * self.width as f64).round() as usize;
            let bar = format!("{}{}", "#".repeat(filled), "-".repeat(self.width - filled));
            let _ = write!(err, "\r\x1b[2K[{bar}] {text}");
            let _ = err.flush();
        } else if self
            .last_plain
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            self.last_plain = Some(Instant::now());
            let _ = writeln!(err, "  {text}");
        }
    }

    /// A line of its own (a fault injected, ...), not overwritten by the next update.
    pub fn note(&mut self, line: &str) {
        let mut err = std::io::stderr();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K");
        }
        let _ = writeln!(err, "{line}");
    }

    /// Ends the redrawn line.
    pub fn finish(&mut self) {
        if self.tty {
            let _ = writeln!(std::io::stderr());
        }
    }
}
