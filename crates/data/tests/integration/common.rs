//! Shared helpers: fixture locations, slice digests, and a tiny HTTP server.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bulwark_data::{DatasetKind, ExpectedFiles, FetchOptions};

pub const T10K_IMAGES: &str = "t10k-images-idx3-ubyte";
pub const T10K_LABELS: &str = "t10k-labels-idx1-ubyte";

/// The committed slices of `kind` (256 test images and labels, gzipped).
pub fn fixture_dir(kind: DatasetKind) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(kind.name())
}

/// The digests of the slices' decompressed files (tests/fixtures/README.md).
pub fn slice_table(kind: DatasetKind) -> ExpectedFiles {
    let (img, lbl) = match kind {
        DatasetKind::Mnist => (
            "d13186a8171483437b6a936d3a0131b2bb83cc7008923c4be04f42b173a18935",
            "7b7f0b73a7c9b36bc8377eb426dd6f4a2b668c90185f8f8f4175105f0d84fb0f",
        ),
        DatasetKind::FashionMnist => (
            "d26e6d4358029015fcf965ead9b5b8d3d14c9f95e7bcb339b0671d303127251c",
            "9a0b493be362cbe84229b5021aa6fcc6c4337787151612e718d2892825267910",
        ),
    };
    ExpectedFiles::new(&[(T10K_IMAGES, img), (T10K_LABELS, lbl)])
}

/// Options that use nothing but what the test sets.
pub fn isolated(cache: &Path) -> FetchOptions {
    let mut o = FetchOptions::new(cache);
    o.use_network = false;
    o.use_registries = false;
    o.timeout = Duration::from_secs(5);
    o
}

/// Names of the entries of `dir` (empty when it does not exist).
pub fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A one-thread HTTP/1.1 server on 127.0.0.1 serving `files` by path. It stops by itself after
/// `max_requests` requests or 20 seconds, or when [`Server::finish`] is called.
pub struct Server {
    pub base: String,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<String>>>,
}

impl Server {
    pub fn start(files: HashMap<String, Vec<u8>>, max_requests: usize) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener.set_nonblocking(true).expect("nonblocking");
        let base = format!("http://{}/", listener.local_addr().expect("addr"));
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut requested = Vec::new();
            while requested.len() < max_requests
                && Instant::now() < deadline
                && !flag.load(Ordering::SeqCst)
            {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if let Some(path) = respond(stream, &files) {
                            requested.push(path);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            requested
        });
        Server {
            base,
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the server and returns the paths it was asked for, in order.
    pub fn finish(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle
            .take()
            .map(|h| h.join().expect("server thread"))
            .unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Answers one request; returns its path.
fn respond(mut stream: TcpStream, files: &HashMap<String, Vec<u8>>) -> Option<String> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 64 * 1024 {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        req.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&req);
    let path = text.split_whitespace().nth(1)?.to_string();
    let (status, body): (&str, &[u8]) = match files.get(&path) {
        Some(b) => ("200 OK", b),
        None => ("404 Not Found", b"not found"),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    stream.flush().ok()?;
    Some(path)
}
