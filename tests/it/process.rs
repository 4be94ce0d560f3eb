//! The real binary as a child process, for what only a separate process shows: its
//! output, exit code, file descriptors and signals.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_tidegate");

/// `tidegate` with no `TIDEGATE_*` variables inherited, so only the given flags count.
pub fn command(args: &[impl AsRef<std::ffi::OsStr>]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TIDEGATE_") {
            command.env_remove(name);
        }
    }
    command
}

/// `serve` flags for a server on a free port over `data_dir` with authentication off,
/// followed by `extra`.
pub fn open_server_args<'a>(data_dir: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data_dir,
        "--auth",
        "none",
    ];
    args.extend_from_slice(extra);
    args
}

/// What a child printed; grows while it runs.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<String>>);

impl Captured {
    fn text(&self) -> String {
        self.0.lock().expect("capture lock").clone()
    }
}

/// A `tidegate serve` child process, killed on drop.
pub struct Process {
    child: Child,
    pub base_url: String,
    stdout: Captured,
    stderr: Captured,
    lines: Receiver<String>,
    readers: Vec<JoinHandle<()>>,
}

/// Everything a stopped process wrote.
pub struct Output {
    pub stdout: String,
    pub stderr: String,
}

const START_TIMEOUT: Duration = Duration::from_secs(30);

impl Process {
    /// Starts `tidegate <args>` with `RUST_LOG=<rust_log>` and waits for its
    /// `tidegate listening on http://ADDR` line. A server with a `--data-dir` runs on the
    /// suite's backend (see `harness::backend_args`) unless `args` names one.
    pub fn spawn(args: &[&str], rust_log: &str) -> Process {
        let mut args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
        let data_dir = args
            .iter()
            .position(|arg| arg == "--data-dir")
            .and_then(|at| args.get(at + 1))
            .cloned();
        if let Some(data_dir) = data_dir
            && !args.iter().any(|arg| arg == "--backend")
        {
            args.extend(crate::harness::backend_args(std::path::Path::new(
                &data_dir,
            )));
        }
        // A failing test can be rerun with more of the server's log.
        let rust_log = std::env::var("TIDEGATE_TEST_RUST_LOG").unwrap_or_else(|_| rust_log.into());
        let mut child = command(&args)
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tidegate");
        let (stdout, stderr) = (Captured::default(), Captured::default());
        let (sender, lines) = mpsc::channel();
        let out_pipe = child.stdout.take().expect("stdout pipe");
        let err_pipe = child.stderr.take().expect("stderr pipe");
        let readers = vec![
            {
                let stdout = stdout.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(out_pipe).lines() {
                        let Ok(line) = line else { break };
                        let mut text = stdout.0.lock().expect("capture lock");
                        text.push_str(&line);
                        text.push('\n');
                        drop(text);
                        let _ = sender.send(line);
                    }
                })
            },
            {
                let stderr = stderr.clone();
                std::thread::spawn(move || {
                    let mut pipe = BufReader::new(err_pipe);
                    let mut buffer = [0; 4096];
                    while let Ok(n @ 1..) = pipe.read(&mut buffer) {
                        stderr
                            .0
                            .lock()
                            .expect("capture lock")
                            .push_str(&String::from_utf8_lossy(&buffer[..n]));
                    }
                })
            },
        ];
        let mut process = Process {
            child,
            base_url: String::new(),
            stdout,
            stderr,
            lines,
            readers,
        };
        let line = process
            .wait_for_line(|line| line.starts_with("tidegate listening on http://"))
            .unwrap_or_else(|| {
                panic!(
                    "tidegate {args:?} did not report its address; stderr:\n{}",
                    process.stderr.text()
                )
            });
        process.base_url = line["tidegate listening on ".len()..].trim().to_owned();
        if crate::harness::kafka_bootstrap().is_some() {
            process.wait_until_ready();
        }
        process
    }

    /// Waits for `/readyz` to answer 200 (the Kafka backend starts its producer in the
    /// background), or the process to end.
    fn wait_until_ready(&mut self) {
        use std::io::Write;
        let addr = self.base_url.trim_start_matches("http://").to_owned();
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            let ready = std::net::TcpStream::connect(&addr)
                .ok()
                .and_then(|mut stream| {
                    stream
                        .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        .ok()?;
                    let mut answer = String::new();
                    stream.read_to_string(&mut answer).ok()?;
                    Some(answer.starts_with("HTTP/1.1 200"))
                });
            if ready == Some(true) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The next stdout line matching `wanted`, skipping others; `None` on exit or time-out.
    pub fn wait_for_line(&self, wanted: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if wanted(&line) => return Some(line),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// Creates topic `name` with `partitions` (on a server without auth).
    pub async fn create_topic(&self, name: &str, partitions: u32) {
        let created = reqwest::Client::new()
            .post(self.url("/v1/topics"))
            .json(&serde_json::json!({"name": name, "partitions": partitions}))
            .send()
            .await
            .expect("create topic");
        assert_eq!(created.status(), 201, "creating {name}");
    }

    /// The server's `/metrics` text.
    pub async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// The process id, to read `/proc/<pid>/…`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr_so_far(&self) -> String {
        self.stderr.text()
    }

    /// SIGTERM (graceful shutdown), then SIGKILL if it takes too long; returns the output.
    pub fn stop(&mut self) -> Output {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        Output {
            stdout: self.stdout.text(),
            stderr: self.stderr.text(),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The test's output (shown when it fails) then says what the server saw.
        if std::thread::panicking() {
            eprintln!(
                "stderr of tidegate at {}:\n{}",
                self.base_url,
                self.stderr.text()
            );
        }
    }
}

/// Open file descriptors of a process.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .count()
}

pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Descriptors a process holds for connections accepted on `port`: its sockets whose
/// local port is `port`, other than the listener (the Kafka client's sockets and files
/// come and go on their own).
pub fn connection_fds(pid: u32, port: u16) -> usize {
    let mut inodes = std::collections::HashSet::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let local_port = local
                .rsplit(':')
                .next()
                .and_then(|hex| u16::from_str_radix(hex, 16).ok());
            // 0A: LISTEN.
            if local_port == Some(port) && *state != "0A" {
                inodes.insert(format!("socket:[{inode}]"));
            }
        }
    }
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| inodes.contains(target.to_string_lossy().as_ref()))
        .count()
}
