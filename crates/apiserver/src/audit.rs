//! A minimal audit log, as kube-apiserver's `--audit-log-path` writes it with a policy of
//! `level: Metadata` for every mutating request: one audit.k8s.io/v1 `Event` per request at
//! stage `ResponseComplete`, one JSON line each, appended with one write (so a killed server
//! loses no finished line). Requests that only read are not logged.
//!
//! Start at [`AuditLog::begin`] (when a request arrives) and [`Pending::finish`] (when its
//! response is ready). Not done: other stages, levels and policies; `objectRef.name` of a
//! create (upstream fills it from the decoded body).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, SecondsFormat, Utc};
use http::request::Parts;
use serde_json::{Value, json};

use crate::path::Target;

/// Why the audit log could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("opening --audit-log-path {path}: {source}")]
pub struct AuditOpenError {
    path: PathBuf,
    source: std::io::Error,
}

/// The open audit log file.
#[derive(Debug)]
pub struct AuditLog {
    file: Mutex<File>,
}

/// A mutating request being served, to be logged once answered.
#[derive(Debug)]
pub struct Pending<'a> {
    log: &'a AuditLog,
    event: Value,
}

impl AuditLog {
    /// Open (append, create) the log at `path`.
    pub fn open(path: &Path) -> Result<AuditLog, AuditOpenError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| AuditOpenError {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(AuditLog {
            file: Mutex::new(file),
        })
    }

    /// Start the record of a request (`None` if it does not mutate a resource). `audit_id`
    /// is the client's `Audit-ID` header if it sent one, else a fresh UUID.
    pub fn begin<'a>(
        &'a self,
        parts: &Parts,
        target: Option<&Target>,
        user: &crate::authn::UserInfo,
        new_id: impl FnOnce() -> String,
    ) -> Option<Pending<'a>> {
        let Some(Target::Resource(t)) = target else {
            return None;
        };
        let verb = match parts.method {
            http::Method::POST => "create",
            http::Method::PUT => "update",
            http::Method::PATCH => "patch",
            http::Method::DELETE if t.name.is_none() => "deletecollection",
            http::Method::DELETE => "delete",
            _ => return None,
        };
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let mut object_ref = json!({"resource": t.res.plural, "apiVersion": t.res.version});
        let fields = [
            ("namespace", t.namespace.clone()),
            ("name", t.name.clone()),
            (
                "apiGroup",
                Some(t.res.group.to_string()).filter(|g| !g.is_empty()),
            ),
            ("subresource", t.subresource.clone()),
        ];
        for (k, v) in fields {
            if let Some(v) = v {
                object_ref[k] = Value::String(v);
            }
        }
        let event = json!({
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": "Metadata",
            "auditID": header("audit-id").unwrap_or_else(new_id),
            "stage": "ResponseComplete",
            "requestURI": parts.uri.path_and_query().map_or("/", |p| p.as_str()),
            "verb": verb,
            "user": {"username": user.name, "groups": user.groups},
            "userAgent": header("user-agent").unwrap_or_default(),
            "objectRef": object_ref,
            "requestReceivedTimestamp": micros(Utc::now()),
        });
        Some(Pending { log: self, event })
    }

    fn append(&self, line: &[u8]) {
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = f.write_all(line) {
            tracing::warn!("audit log write failed: {e}");
        }
    }
}

impl Pending<'_> {
    /// Log the request with its response code, stamped now.
    pub fn finish(mut self, code: u16) {
        self.event["responseStatus"] = json!({"metadata": {}, "code": code});
        self.event["stageTimestamp"] = Value::String(micros(Utc::now()));
        let mut line = serde_json::to_vec(&self.event).unwrap_or_default();
        line.push(b'\n');
        self.log.append(&line);
    }
}

/// RFC 3339 with microseconds, as upstream's `metav1.MicroTime`.
fn micros(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: &str, uri: &str, ua: &str) -> Parts {
        http::Request::builder()
            .method(method)
            .uri(uri)
            .header("user-agent", ua)
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    #[test]
    fn logs_mutations_with_metadata_and_skips_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path).unwrap();
        let put = parts(
            "PUT",
            "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kcm",
            "kcm/v1 x",
        );
        let target = crate::path::parse(put.uri.path()).unwrap();
        log.begin(
            &put,
            Some(&target),
            &crate::authn::UserInfo::admin(),
            || "id-1".into(),
        )
        .expect("a mutation")
        .finish(200);
        let get = parts("GET", "/api/v1/pods", "kubectl");
        let target = crate::path::parse(get.uri.path()).unwrap();
        assert!(
            log.begin(
                &get,
                Some(&target),
                &crate::authn::UserInfo::admin(),
                || "id-2".into()
            )
            .is_none()
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 1);
        let e = &lines[0];
        assert_eq!(e["apiVersion"], "audit.k8s.io/v1");
        assert_eq!(e["auditID"], "id-1");
        assert_eq!(e["verb"], "update");
        assert_eq!(e["stage"], "ResponseComplete");
        assert_eq!(e["userAgent"], "kcm/v1 x");
        assert_eq!(e["responseStatus"]["code"], 200);
        assert_eq!(e["objectRef"]["resource"], "leases");
        assert_eq!(e["objectRef"]["namespace"], "kube-system");
        assert_eq!(e["objectRef"]["name"], "kcm");
        assert_eq!(e["objectRef"]["apiGroup"], "coordination.k8s.io");
        let ts = e["stageTimestamp"].as_str().unwrap();
        assert_eq!(ts.len(), "2026-12-05T02:00:00.123456Z".len(), "{ts}");
        assert!(DateTime::parse_from_rfc3339(ts).is_ok());
    }
}
