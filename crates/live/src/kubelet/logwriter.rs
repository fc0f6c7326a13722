//! Capturing a container's stdout and stderr (I/O, thin): each line becomes a CRI record in
//! `<root>/<uid>/<container>/<attempt>.log`, rotated at `--container-log-max-size` keeping
//! `--container-log-max-files` files; only the current and the previous instance are kept.
//! Start at [`LogConfig::capture`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt};

use kubelet::logfmt::{self, CriLine, Stream};

/// Where container logs go and how big they may grow.
#[derive(Clone, Debug)]
pub struct LogConfig {
    pub root: PathBuf,
    /// `--container-log-max-size` in bytes: a file past it is rotated.
    pub max_size: u64,
    /// `--container-log-max-files`: files kept per instance (the current one included).
    pub max_files: u32,
}

struct FileWriter {
    dir: PathBuf,
    attempt: i32,
    file: std::fs::File,
    size: u64,
    max_size: u64,
    max_files: u32,
}

impl FileWriter {
    fn write(&mut self, stream: Stream, partial: bool, content: Vec<u8>) -> std::io::Result<()> {
        let rec = logfmt::format_line(&CriLine {
            time: chrono::Utc::now(),
            stream,
            partial,
            content,
        });
        self.file.write_all(&rec)?;
        self.size += rec.len() as u64;
        if self.size >= self.max_size {
            self.rotate()?;
        }
        Ok(())
    }

    /// `N.log` -> `N.log.1` -> … ; the oldest beyond `max_files` is dropped.
    fn rotate(&mut self) -> std::io::Result<()> {
        let keep = self.max_files.max(1);
        let _ = std::fs::remove_file(logfmt::log_file(&self.dir, self.attempt, keep - 1));
        for n in (0..keep.saturating_sub(1)).rev() {
            let from = logfmt::log_file(&self.dir, self.attempt, n);
            if from.exists() {
                std::fs::rename(&from, logfmt::log_file(&self.dir, self.attempt, n + 1))?;
            }
        }
        if keep == 1 {
            let _ = std::fs::remove_file(logfmt::log_file(&self.dir, self.attempt, 0));
        }
        self.file = open_append(&logfmt::log_file(&self.dir, self.attempt, 0))?;
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// The log files of one container instance, open for writing.
#[derive(Clone)]
pub struct Capture {
    writer: Arc<Mutex<FileWriter>>,
}

impl LogConfig {
    /// Prepare instance `attempt` of `container` of pod `uid`: drop instances older than the
    /// previous one and open the current file.
    pub fn capture(&self, uid: &str, container: &str, attempt: i32) -> std::io::Result<Capture> {
        let dir = logfmt::container_dir(&self.root, uid, container);
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let old = name
                .split('.')
                .next()
                .and_then(|n| n.parse::<i32>().ok())
                .is_some_and(|n| n < attempt - 1 || n == attempt);
            if old {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let path = logfmt::log_file(&dir, attempt, 0);
        let file = open_append(&path)?;
        Ok(Capture {
            writer: Arc::new(Mutex::new(FileWriter {
                dir,
                attempt,
                file,
                size: 0,
                max_size: self.max_size.max(1),
                max_files: self.max_files,
            })),
        })
    }

    /// Remove every log of pod `uid`.
    pub fn remove_pod(&self, uid: &str) {
        let _ = std::fs::remove_dir_all(self.root.join(uid));
    }
}

impl Capture {
    /// Copy `from` (a pipe of the container) into the log until it closes.
    pub fn spawn_reader<R: AsyncRead + Unpin + Send + 'static>(&self, stream: Stream, mut from: R) {
        let writer = self.writer.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            let mut pending = Vec::new();
            loop {
                let n = match from.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let (records, rest) = logfmt::split_records(pending, &buf[..n]);
                pending = rest;
                if !write_all(&writer, stream, records) {
                    return;
                }
            }
            if !pending.is_empty() {
                write_all(&writer, stream, vec![(false, pending)]);
            }
        });
    }
}

/// Write records; false when the log cannot be written any more.
fn write_all(writer: &Mutex<FileWriter>, stream: Stream, records: Vec<(bool, Vec<u8>)>) -> bool {
    let Ok(mut w) = writer.lock() else {
        return false;
    };
    for (partial, content) in records {
        if let Err(e) = w.write(stream, partial, content) {
            tracing::warn!(dir = %w.dir.display(), error = %e, "container log write failed");
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rotates_and_keeps_two_instances() {
        let root = tempfile::tempdir().expect("tmp");
        let cfg = LogConfig {
            root: root.path().to_path_buf(),
            max_size: 200,
            max_files: 3,
        };
        let cap = cfg.capture("u", "web", 0).expect("capture");
        let (mut tx, rx) = tokio::io::duplex(1 << 16);
        cap.spawn_reader(Stream::Stdout, rx);
        let mut text = String::new();
        for i in 0..20 {
            text.push_str(&format!("line {i:02}\n"));
        }
        tokio::io::AsyncWriteExt::write_all(&mut tx, text.as_bytes())
            .await
            .expect("write");
        drop(tx);
        let dir = logfmt::container_dir(root.path(), "u", "web");
        let files = logfmt::instance_files(&dir, 0, 3);
        // Wait (bounded) for the reader to finish writing all lines that the kept files hold.
        let mut got = Vec::new();
        for _ in 0..200 {
            got = files
                .iter()
                .flat_map(|f| logfmt::parse_all(&std::fs::read(f).unwrap_or_default()))
                .collect::<Vec<_>>();
            if got.last().is_some_and(|l| l.content == b"line 19") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let texts: Vec<String> = got
            .iter()
            .map(|l| String::from_utf8_lossy(&l.content).into_owned())
            .collect();
        assert_eq!(texts.last().map(String::as_str), Some("line 19"));
        assert!(texts.len() < 20, "the oldest rotated file was dropped");
        let total: u64 = files
            .iter()
            .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
            .sum();
        assert!(total <= 3 * 200 + 100, "bounded: {total} bytes");
        // Lines are consecutive: nothing lost in the kept window.
        let first: usize = texts[0][5..].parse().expect("n");
        for (i, t) in texts.iter().enumerate() {
            assert_eq!(t, &format!("line {:02}", first + i));
        }
        cfg.capture("u", "web", 1).expect("1");
        cfg.capture("u", "web", 2).expect("2");
        assert!(!logfmt::log_file(&dir, 0, 0).exists(), "instance 0 dropped");
        assert!(
            logfmt::log_file(&dir, 1, 0).exists(),
            "the previous instance is kept"
        );
        cfg.remove_pod("u");
        assert!(!dir.exists());
    }
}
