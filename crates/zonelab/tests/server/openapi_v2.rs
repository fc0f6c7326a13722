//! kubectl 1.27 and 1.28 read `/openapi/v2` as gnostic protobuf: `explain` from the v2 document,
//! and kubectl's client-side strict validation against it. kubectl runs that validation only
//! when the server does not list `fieldValidation` (ours does, like upstream's), so a test proxy
//! hides it: `/openapi/v3…` answers 404 and the protobuf v2 document loses its `paths`.
//!
//! Start at `kubectl_validates_client_side_against_the_protobuf_schema`.

use crate::common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use api::proto::wire::{LEN, ProtoError, Reader, put_len_field};
use common::{Kubectl, ServerProc, kubectl_versions};

/// kubectl 1.27 and 1.28: the versions that validate against the v2 document.
fn v2_kubectls() -> Vec<(u32, std::path::PathBuf)> {
    kubectl_versions()
        .into_iter()
        .filter(|(m, _)| *m <= 28)
        .collect()
}

/// The document without its `paths` (field 8); every top-level field is length-delimited.
fn without_paths(doc: &[u8]) -> Result<Vec<u8>, ProtoError> {
    let mut r = Reader::new(doc);
    let mut out = Vec::new();
    while !r.at_end() {
        let (number, wire_type) = r.key()?;
        assert_eq!(wire_type, LEN, "field {number}");
        let payload = r.bytes()?;
        if number != 8 {
            put_len_field(&mut out, number, payload);
        }
    }
    Ok(out)
}

/// One HTTP message head (through the blank line) and its Content-Length body.
fn read_request(s: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        raw.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&raw).to_string();
    let len = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    s.read_exact(&mut body)?;
    Ok((head, body))
}

/// `head` with `Connection: close` in place of any Connection header.
fn closing(head: &str) -> String {
    let mut lines: Vec<&str> = head
        .trim_end()
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    lines.push("Connection: close");
    format!("{}\r\n\r\n", lines.join("\r\n"))
}

/// Relay one request (one per connection) to `upstream`, editing the OpenAPI answers.
fn relay(mut client: TcpStream, upstream: &str) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let (head, body) = read_request(&mut client)?;
    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
    if path.starts_with("/openapi/v3") {
        let not_found = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        return client.write_all(not_found.as_bytes());
    }
    let mut server = TcpStream::connect(upstream)?;
    server.set_read_timeout(Some(Duration::from_secs(30)))?;
    server.write_all(closing(&head).as_bytes())?;
    server.write_all(&body)?;
    let mut raw = Vec::new();
    server.read_to_end(&mut raw)?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let (Some(at), true) = (split, path.starts_with("/openapi/v2")) else {
        return client.write_all(&raw);
    };
    let resp_head = String::from_utf8_lossy(&raw[..at]).to_string();
    if !resp_head.contains("protobuf") {
        return client.write_all(&raw);
    }
    let doc = without_paths(&raw[at..]).expect("the served document parses");
    let kept: Vec<&str> = resp_head
        .trim_end()
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("content-length:"))
        .collect();
    let new_head = format!(
        "{}\r\nContent-Length: {}\r\n\r\n",
        kept.join("\r\n"),
        doc.len()
    );
    client.write_all(new_head.as_bytes())?;
    client.write_all(&doc)
}

/// The proxy's address; its threads end with the test process.
fn start_proxy(upstream: &str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    let addr = listener.local_addr().expect("addr").to_string();
    let upstream = upstream.to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let up = upstream.clone();
            std::thread::spawn(move || drop(relay(conn, &up)));
        }
    });
    addr
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: echo
        image: zonelab/echo
        ports:
        - containerPort: 8080
        env:
        - name: MODE
          value: fast
";

#[test]
fn kubectl_validates_client_side_against_the_protobuf_schema() {
    let versions = v2_kubectls();
    if versions.is_empty() {
        eprintln!("SKIPPED: no kubectl 1.27 or 1.28");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path(), &["--controllers", ""]);
    let proxy = start_proxy(&server.addr);
    for (minor, bin) in &versions {
        let mut k = Kubectl::with_binary(&server, bin);
        k.server = format!("http://{proxy}");
        let before = common::store_revision(&server.addr);
        let unknown =
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: odd\nbogus: 1\ndata:\n  a: b\n";
        let err = k.fails(&["apply", "-f", "-"], Some(unknown));
        assert!(
            err.contains(
                "error validating data: ValidationError(ConfigMap): unknown field \"bogus\" in io.k8s.api.core.v1.ConfigMap"
            ),
            "1.{minor}: {err}"
        );
        let wrong_type = DEPLOYMENT.replace("replicas: 2", "replicas: two");
        let err = k.fails(&["apply", "-f", "-"], Some(&wrong_type));
        assert!(
            err.contains("ValidationError(Deployment.spec.replicas): invalid type for io.k8s.api.apps.v1.DeploymentSpec.replicas: got \"string\", expected \"integer\""),
            "1.{minor}: {err}"
        );
        assert_eq!(
            common::store_revision(&server.addr),
            before,
            "1.{minor}: nothing stored"
        );
        // A valid object passes the whole schema (pod template, containers, ports, env).
        let name = format!("web-{minor}");
        let valid = DEPLOYMENT.replace("name: web\n", &format!("name: {name}\n"));
        let out = k.ok(&["apply", "-f", "-"], Some(&valid));
        assert!(
            out.contains(&format!("deployment.apps/{name} created")),
            "1.{minor}: {out}"
        );
        let changed = valid.replace("value: fast", "value: slow");
        let out = k.ok(&["apply", "-f", "-"], Some(&changed));
        assert!(
            out.contains(&format!("deployment.apps/{name} configured")),
            "1.{minor}: {out}"
        );
    }
}

/// Straight to the server: `explain` from the v2 document finds the kind by its GVK extension
/// and a map's value type; strict `apply` of an unknown field is refused (by the server, which
/// lists `fieldValidation`) after kubectl has parsed the protobuf document.
#[test]
fn kubectl_explains_from_the_protobuf_document() {
    let versions = v2_kubectls();
    if versions.is_empty() {
        eprintln!("SKIPPED: no kubectl 1.27 or 1.28");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(dir.path(), &["--controllers", ""]);
    for (minor, bin) in &versions {
        let k = Kubectl::with_binary(&server, bin);
        // `plaintext-openapiv2` explains from `/openapi/v2` alone (its layout differs from v3's).
        let out = k.ok(
            &["explain", "configmap.data", "--output=plaintext-openapiv2"],
            None,
        );
        for want in [
            "KIND:     ConfigMap",
            "FIELD:    data <map[string]string>",
            "Data contains the configuration data.",
        ] {
            assert!(out.contains(want), "1.{minor}: {want:?} missing in {out}");
        }
        let before = common::store_revision(&server.addr);
        let unknown = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: odd\nbogus: 1\n";
        let err = k.fails(&["apply", "-f", "-"], Some(unknown));
        assert!(err.contains("unknown field \"bogus\""), "1.{minor}: {err}");
        assert_eq!(
            common::store_revision(&server.addr),
            before,
            "1.{minor}: nothing stored"
        );
    }
}
