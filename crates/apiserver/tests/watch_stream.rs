//! Watch streams over real HTTP on loopback: every JSON watcher gets the same bytes (also a
//! client-go client that asks for protobuf with a JSON fallback), a selector watcher gets its own
//! event types, a watcher that does not read is dropped without holding back the others, and
//! `timeoutSeconds`, `sendInitialEvents`, bookmarks and 410 Gone behave as upstream.
//!
//! Start at `json_watchers_get_identical_lines_selector_watchers_their_own`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Bounds every wait so a broken stream fails the test instead of hanging it.
const BOUND: Duration = Duration::from_secs(60);

async fn start(opts: store::StoreOptions, cfg: apiserver::Config) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = apiserver::Config {
        advertise_address: addr,
        ..cfg
    };
    let store: store::SharedStore = Arc::new(store::MemStore::with_options(opts));
    let server = apiserver::Server::new(store, cfg).await.unwrap();
    tokio::spawn(server.serve(listener));
    addr.to_string()
}

/// A keep-alive connection for plain requests (responses with Content-Length).
struct Conn {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

impl Conn {
    async fn open(addr: &str) -> Conn {
        let (r, w) = TcpStream::connect(addr).await.unwrap().into_split();
        Conn {
            r: BufReader::new(r),
            w,
        }
    }

    async fn send(&mut self, method: &str, path: &str, ctype: &str, body: &[u8]) -> (u16, Value) {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        self.w.write_all(head.as_bytes()).await.unwrap();
        self.w.write_all(body).await.unwrap();
        let (code, headers) = read_head(&mut self.r).await;
        let len: usize = header(&headers, "content-length").parse().unwrap();
        let mut buf = vec![0; len];
        self.r.read_exact(&mut buf).await.unwrap();
        (code, serde_json::from_slice(&buf).unwrap_or(Value::Null))
    }

    async fn json(&mut self, method: &str, path: &str, body: &Value) -> Value {
        let ctype = if method == "PATCH" {
            "application/merge-patch+json"
        } else {
            "application/json"
        };
        let (code, v) = self
            .send(method, path, ctype, body.to_string().as_bytes())
            .await;
        assert!((200..300).contains(&code), "{method} {path}: {code} {v}");
        v
    }
}

async fn read_head(r: &mut BufReader<OwnedReadHalf>) -> (u16, Vec<String>) {
    let mut status = String::new();
    r.read_line(&mut status).await.unwrap();
    let code = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).await.unwrap();
        if line == "\r\n" || line.is_empty() {
            return (code, headers);
        }
        headers.push(line.trim_end().to_ascii_lowercase());
    }
}

fn header(headers: &[String], name: &str) -> String {
    headers
        .iter()
        .find_map(|h| h.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// One watch stream, read chunk by chunk (the server sends one line per chunk).
struct Watch {
    r: BufReader<OwnedReadHalf>,
    _w: OwnedWriteHalf,
    code: u16,
}

impl Watch {
    async fn open_on(stream: TcpStream, path: &str, accept: &str) -> Watch {
        let (r, mut w) = stream.into_split();
        let head = format!("GET {path} HTTP/1.1\r\nHost: t\r\nAccept: {accept}\r\n\r\n");
        w.write_all(head.as_bytes()).await.unwrap();
        let mut r = BufReader::new(r);
        let (code, headers) = read_head(&mut r).await;
        if code == 200 {
            assert_eq!(header(&headers, "transfer-encoding"), "chunked");
        }
        Watch { r, _w: w, code }
    }

    async fn open(addr: &str, path: &str, accept: &str) -> Watch {
        Watch::open_on(TcpStream::connect(addr).await.unwrap(), path, accept).await
    }

    /// The next chunk's bytes; `None` at the end of the stream.
    async fn next_raw(&mut self) -> Option<Vec<u8>> {
        let read = async {
            let mut size = String::new();
            if self.r.read_line(&mut size).await.ok()? == 0 {
                return None;
            }
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut buf = vec![0; n + 2];
            self.r.read_exact(&mut buf).await.ok()?;
            buf.truncate(n);
            (n > 0).then_some(buf)
        };
        tokio::time::timeout(BOUND, read).await.expect("watch line")
    }

    async fn next(&mut self) -> Option<Value> {
        let raw = self.next_raw().await?;
        assert!(raw.ends_with(b"\n"), "one line per chunk");
        Some(serde_json::from_slice(&raw).unwrap())
    }
}

fn cm(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";

fn rv_of(v: &Value) -> String {
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_watchers_get_identical_lines_selector_watchers_their_own() {
    let addr = start(Default::default(), Default::default()).await;
    let mut c = Conn::open(&addr).await;
    let created = c.json("POST", CMS, &cm("a", json!({"app": "x"}))).await;
    let rv = rv_of(&created);
    let from = format!("{CMS}?watch=1&resourceVersion={rv}");
    let mut plain = Watch::open(&addr, &from, "application/json").await;
    // client-go configured for protobuf asks with a JSON fallback (no protobuf encoder here).
    let fallback = "application/vnd.kubernetes.protobuf, application/json";
    let mut client_go = Watch::open(&addr, &from, fallback).await;
    let mut named = Watch::open(
        &addr,
        &format!("{from}&fieldSelector=metadata.name%3Da"),
        "application/json",
    )
    .await;
    let mut selected = Watch::open(&addr, &format!("{from}&labelSelector=app%3Dx"), "").await;
    let proto_only = Watch::open(
        &addr,
        &from,
        "application/vnd.kubernetes.protobuf;stream=watch",
    )
    .await;
    assert_eq!(proto_only.code, 406);

    let path = format!("{CMS}/a");
    c.json(
        "PATCH",
        &path,
        &json!({"metadata": {"labels": {"app": "y"}}}),
    )
    .await;
    c.json(
        "PATCH",
        &path,
        &json!({"metadata": {"labels": {"app": "x"}}}),
    )
    .await;
    c.json("POST", CMS, &cm("b", json!({"app": "y"}))).await;
    c.send("DELETE", &path, "application/json", b"").await;

    let mut lines = Vec::new();
    for _ in 0..4 {
        let a = plain.next_raw().await.unwrap();
        assert_eq!(client_go.next_raw().await.unwrap(), a, "identical bytes");
        lines.push(serde_json::from_slice::<Value>(&a).unwrap());
    }
    let types: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["MODIFIED", "MODIFIED", "ADDED", "DELETED"]);
    // The name watcher skips `b` and sends the very same lines for `a`.
    for want in [&lines[0], &lines[1], &lines[3]] {
        assert_eq!(&named.next().await.unwrap(), want);
    }
    // app=x: leaving the selection is a DELETED (object in its new state), coming back ADDED.
    let sel: Vec<Value> = [
        selected.next().await,
        selected.next().await,
        selected.next().await,
    ]
    .into_iter()
    .map(Option::unwrap)
    .collect();
    assert_eq!(sel[0]["type"], "DELETED");
    assert_eq!(sel[0]["object"], lines[0]["object"]);
    assert_eq!(sel[0]["object"]["metadata"]["labels"]["app"], "y");
    assert_eq!(sel[1]["type"], "ADDED");
    assert_eq!(sel[1]["object"], lines[1]["object"]);
    assert_eq!(sel[2], lines[3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_does_not_read_is_dropped_and_holds_back_no_one() {
    const CAPACITY: usize = 8;
    const WRITES: usize = 400;
    let opts = store::StoreOptions {
        watcher_capacity: CAPACITY,
        ..Default::default()
    };
    let addr = start(opts, Default::default()).await;
    let mut c = Conn::open(&addr).await;
    let created = c.json("POST", CMS, &cm("big", json!({}))).await;
    let from = format!("{CMS}?watch=1&resourceVersion={}", rv_of(&created));
    // A reader with a small receive window that stops reading after the response head.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let slow_stream = sock.connect(addr.parse().unwrap()).await.unwrap();
    let mut slow = Watch::open_on(slow_stream, &from, "application/json").await;
    let mut fast = Watch::open(&addr, &from, "application/json").await;
    // 400 changes of ~32 KiB (~13 MiB): far more than the socket buffers (at most 4 MiB for
    // the server's send buffer here), hyper's write buffer and the store's 8-message queue.
    let pad = "p".repeat(32 * 1024);
    let path = format!("{CMS}/big");
    let reader = tokio::spawn(async move {
        let mut n = 0;
        while n < WRITES {
            let l = fast.next().await.expect("fast watcher's stream ended");
            assert_eq!(l["type"], "MODIFIED");
            n += 1;
        }
        n
    });
    for i in 0..WRITES {
        let patch = json!({"data": {"k": format!("{i}{pad}")}});
        c.json("PATCH", &path, &patch).await;
    }
    // The reading watcher saw every change while the other one read nothing.
    assert_eq!(
        tokio::time::timeout(BOUND, reader).await.unwrap().unwrap(),
        WRITES
    );
    // The slow one now reads: what was buffered for it, then the end of the stream (the store
    // dropped it: TooSlow); it never had all changes queued for it.
    let mut got = 0;
    while let Some(l) = slow.next().await {
        assert_eq!(l["type"], "MODIFIED");
        got += 1;
    }
    assert!(got < WRITES, "a slow watcher is cut off, got {got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_events_bookmarks_timeout_and_gone() {
    let cfg = apiserver::Config {
        bookmark_interval: Duration::from_millis(100),
        ..Default::default()
    };
    let opts = store::StoreOptions {
        history_capacity: 4,
        ..Default::default()
    };
    let addr = start(opts, cfg).await;
    let mut c = Conn::open(&addr).await;
    let first = c.json("POST", CMS, &cm("a", json!({}))).await;
    c.json("POST", CMS, &cm("b", json!({}))).await;

    // sendInitialEvents: the current objects as ADDED, then the bookmark that ends them.
    let mut w = Watch::open(
        &addr,
        &format!(
            "{CMS}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1"
        ),
        "",
    )
    .await;
    let mut names = Vec::new();
    for _ in 0..2 {
        let l = w.next().await.unwrap();
        assert_eq!(l["type"], "ADDED");
        names.push(
            l["object"]["metadata"]["name"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(names, ["a", "b"]);
    let end = w.next().await.unwrap();
    assert_eq!(end["type"], "BOOKMARK");
    assert_eq!(
        end["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    // Then periodic bookmarks until timeoutSeconds ends the stream.
    let mut bookmarks = 0;
    while let Some(l) = w.next().await {
        assert_eq!(l["type"], "BOOKMARK");
        assert_eq!(l["object"]["kind"], "ConfigMap");
        bookmarks += 1;
    }
    assert!(bookmarks >= 1);

    // Without allowWatchBookmarks: no bookmark, the stream just ends.
    let mut quiet = Watch::open(
        &addr,
        &format!(
            "{CMS}?watch=1&resourceVersion={}&timeoutSeconds=1",
            rv_of(&first)
        ),
        "",
    )
    .await;
    let l = quiet.next().await.unwrap();
    assert_eq!(
        (l["type"].as_str(), l["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("b"))
    );
    assert!(quiet.next().await.is_none());

    // Push the history past its bound: a watch from the first revision gets 410 in an ERROR.
    for i in 0..8 {
        c.json("POST", CMS, &cm(&format!("x{i}"), json!({}))).await;
    }
    let mut gone = Watch::open(
        &addr,
        &format!("{CMS}?watch=1&resourceVersion={}", rv_of(&first)),
        "",
    )
    .await;
    assert_eq!(gone.code, 200);
    let e = gone.next().await.unwrap();
    assert_eq!(e["type"], "ERROR");
    assert_eq!(e["object"]["code"], 410);
    assert_eq!(e["object"]["reason"], "Expired");
    assert!(gone.next().await.is_none());
}
