//! Container log files and `kubectl logs` options, pure: the CRI log line format
//! (`2026-12-05T04:55:00.123456789Z stdout F text`, as containerd writes under
//! `/var/log/pods`), file names with rotation, and what a request selects (`tailLines`,
//! `sinceSeconds`/`sinceTime`, `timestamps`, `limitBytes`). Start at [`LogOptions::parse`]
//! and [`render`].

use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};

/// Upstream `containerLogMaxSize` default: 10Mi (k/k `pkg/kubelet/apis/config/v1beta1/defaults.go`).
pub const DEFAULT_CONTAINER_LOG_MAX_SIZE: u64 = 10 * 1024 * 1024;
/// Upstream `containerLogMaxFiles` default: 5 (same file).
pub const DEFAULT_CONTAINER_LOG_MAX_FILES: u32 = 5;
/// Longest line content in one CRI record; longer lines are split into partial (`P`) records
/// (containerd's `maxContainerLogLineSize` is 16 KiB).
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// A bad `/containerLogs` query.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LogOptionsError {
    #[error("invalid value {value:?} for {name}: {why}")]
    Invalid {
        name: &'static str,
        value: String,
        why: &'static str,
    },
}

/// The query of a `/containerLogs/NS/POD/CONTAINER` request (upstream `PodLogOptions`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<u64>,
    pub since_seconds: Option<u64>,
    pub since_time: Option<DateTime<Utc>>,
    pub limit_bytes: Option<u64>,
}

fn flag(v: &str) -> bool {
    v == "true" || v == "1"
}

impl LogOptions {
    /// Parse `(name, value)` query pairs; unknown names are ignored, as upstream's decoder does.
    pub fn parse<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<LogOptions, LogOptionsError> {
        let mut o = LogOptions::default();
        let number = |name: &'static str, v: &str| {
            v.parse::<u64>().map_err(|_| LogOptionsError::Invalid {
                name,
                value: v.to_string(),
                why: "must be a non-negative integer",
            })
        };
        for (k, v) in pairs {
            match k {
                "follow" => o.follow = flag(v),
                "previous" => o.previous = flag(v),
                "timestamps" => o.timestamps = flag(v),
                "tailLines" => o.tail_lines = Some(number("tailLines", v)?),
                "sinceSeconds" => o.since_seconds = Some(number("sinceSeconds", v)?),
                "limitBytes" => o.limit_bytes = Some(number("limitBytes", v)?),
                "sinceTime" => {
                    let t =
                        DateTime::parse_from_rfc3339(v).map_err(|_| LogOptionsError::Invalid {
                            name: "sinceTime",
                            value: v.to_string(),
                            why: "must be an RFC 3339 time",
                        })?;
                    o.since_time = Some(t.with_timezone(&Utc));
                }
                _ => {}
            }
        }
        Ok(o)
    }

    /// The earliest time a shown line may have.
    pub fn since(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let secs = self
            .since_seconds
            .map(|s| now - chrono::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 2)));
        secs.or(self.since_time)
    }
}

/// Which output stream a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One record of a CRI log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CriLine {
    pub time: DateTime<Utc>,
    pub stream: Stream,
    /// A partial record (`P`): the line continues in the next record.
    pub partial: bool,
    pub content: Vec<u8>,
}

/// One record as written to the file (with its trailing newline).
pub fn format_line(line: &CriLine) -> Vec<u8> {
    let mut out = format!(
        "{} {} {} ",
        line.time.to_rfc3339_opts(SecondsFormat::Nanos, true),
        line.stream.as_str(),
        if line.partial { "P" } else { "F" }
    )
    .into_bytes();
    out.extend_from_slice(&line.content);
    out.push(b'\n');
    out
}

/// Parse one record (without its newline); `None` for a malformed one.
pub fn parse_line(raw: &[u8]) -> Option<CriLine> {
    let mut parts = raw.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?;
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    let content = parts.next().unwrap_or_default().to_vec();
    Some(CriLine {
        time: DateTime::parse_from_rfc3339(time).ok()?.with_timezone(&Utc),
        stream,
        partial,
        content,
    })
}

/// Parse every record of a file's bytes (a torn last line is skipped).
pub fn parse_all(bytes: &[u8]) -> Vec<CriLine> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(parse_line)
        .collect()
}

/// What `kubectl logs` shows of one record: its content (with the record's time first under
/// `timestamps`), a newline after a full line.
pub fn render_line(line: &CriLine, timestamps: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.content.len() + 40);
    if timestamps {
        out.extend_from_slice(
            line.time
                .to_rfc3339_opts(SecondsFormat::Nanos, true)
                .as_bytes(),
        );
        out.push(b' ');
    }
    out.extend_from_slice(&line.content);
    if !line.partial {
        out.push(b'\n');
    }
    out
}

/// The records `opts` selects from `lines` (oldest first): those since `since`, then the last
/// `tailLines` full lines of them.
pub fn select<'a>(lines: &'a [CriLine], opts: &LogOptions, now: DateTime<Utc>) -> &'a [CriLine] {
    let since = opts.since(now);
    let first = since.map_or(0, |t| lines.partition_point(|l| l.time < t));
    let lines = &lines[first..];
    let Some(tail) = opts.tail_lines else {
        return lines;
    };
    let mut full = 0u64;
    let mut start = lines.len();
    while start > 0 {
        let l = &lines[start - 1];
        if !l.partial {
            if full == tail {
                break;
            }
            full += 1;
        }
        start -= 1;
    }
    &lines[start..]
}

/// The bytes `kubectl logs` gets for `lines` under `opts` (before `limitBytes`).
pub fn render(lines: &[CriLine], opts: &LogOptions, now: DateTime<Utc>) -> Vec<u8> {
    select(lines, opts, now)
        .iter()
        .flat_map(|l| render_line(l, opts.timestamps))
        .collect()
}

/// The directory of one container's logs under the runtime's log root.
pub fn container_dir(root: &Path, uid: &str, container: &str) -> PathBuf {
    root.join(uid).join(container)
}

/// The current file of one container instance: `<attempt>.log`; rotated ones are
/// `<attempt>.log.1` (newest) .. `<attempt>.log.<max_files - 1>`.
pub fn log_file(dir: &Path, attempt: i32, rotation: u32) -> PathBuf {
    match rotation {
        0 => dir.join(format!("{attempt}.log")),
        n => dir.join(format!("{attempt}.log.{n}")),
    }
}

/// An instance's files, oldest first.
pub fn instance_files(dir: &Path, attempt: i32, max_files: u32) -> Vec<PathBuf> {
    (0..max_files.max(1))
        .rev()
        .map(|n| log_file(dir, attempt, n))
        .collect()
}

/// Split a chunk of output into records of at most [`MAX_LINE_BYTES`]: full lines and, for a
/// line that is too long or not yet ended, partial ones. Returns the records and the bytes of
/// an unfinished line to keep for the next chunk.
pub fn split_records(mut pending: Vec<u8>, chunk: &[u8]) -> (Vec<(bool, Vec<u8>)>, Vec<u8>) {
    let mut out = Vec::new();
    for &b in chunk {
        if b == b'\n' {
            out.push((false, std::mem::take(&mut pending)));
        } else {
            pending.push(b);
            if pending.len() >= MAX_LINE_BYTES {
                out.push((true, std::mem::take(&mut pending)));
            }
        }
    }
    (out, pending)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 5).expect("time")
    }

    fn line(s: i64, text: &str, partial: bool) -> CriLine {
        CriLine {
            time: at(s),
            stream: Stream::Stdout,
            partial,
            content: text.as_bytes().to_vec(),
        }
    }

    #[test]
    fn cri_lines_round_trip() {
        let l = CriLine {
            stream: Stream::Stderr,
            ..line(1, "GET / 200 with spaces", false)
        };
        let raw = format_line(&l);
        assert!(raw.starts_with(b"2027-01-15T08:00:01.000000005Z stderr F GET"));
        assert_eq!(parse_all(&raw), vec![l]);
        assert_eq!(parse_line(b"garbage"), None);
        // A torn last record (no stream/tag yet) is skipped.
        let mut two = format_line(&line(2, "a", false));
        two.extend_from_slice(b"2027-01-15T08:00:03Z std");
        assert_eq!(parse_all(&two).len(), 1);
    }

    #[test]
    fn tail_since_and_timestamps() {
        let lines = vec![
            line(0, "a", false),
            line(10, "b-part1-", true),
            line(10, "b-part2", false),
            line(20, "c", false),
        ];
        let now = at(25);
        let all = LogOptions::default();
        assert_eq!(render(&lines, &all, now), b"a\nb-part1-b-part2\nc\n");
        let tail2 = LogOptions {
            tail_lines: Some(2),
            ..LogOptions::default()
        };
        assert_eq!(render(&lines, &tail2, now), b"b-part1-b-part2\nc\n");
        let tail0 = LogOptions {
            tail_lines: Some(0),
            ..LogOptions::default()
        };
        assert_eq!(render(&lines, &tail0, now), b"");
        let since = LogOptions {
            since_seconds: Some(10),
            timestamps: true,
            ..LogOptions::default()
        };
        assert_eq!(
            String::from_utf8_lossy(&render(&lines, &since, now)),
            "2027-01-15T08:00:20.000000005Z c\n"
        );
    }

    #[test]
    fn options_and_records() {
        let o = LogOptions::parse([("follow", "true"), ("tailLines", "3"), ("pretty", "x")])
            .expect("options");
        assert!(o.follow && !o.previous);
        assert_eq!(o.tail_lines, Some(3));
        assert!(LogOptions::parse([("tailLines", "-1")]).is_err());
        let (recs, rest) = split_records(b"ab".to_vec(), b"c\nde");
        assert_eq!(recs, vec![(false, b"abc".to_vec())]);
        assert_eq!(rest, b"de");
        let long = vec![b'x'; MAX_LINE_BYTES + 1];
        let (recs, rest) = split_records(Vec::new(), &long);
        assert_eq!(recs.len(), 1);
        assert!(recs[0].0, "a too long line is cut into a partial record");
        assert_eq!(rest.len(), 1);
        let dir = Path::new("/l");
        assert_eq!(
            instance_files(dir, 2, 3),
            vec![
                PathBuf::from("/l/2.log.2"),
                PathBuf::from("/l/2.log.1"),
                PathBuf::from("/l/2.log")
            ]
        );
    }
}
