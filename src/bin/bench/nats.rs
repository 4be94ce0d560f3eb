//! The peer of the push benchmarks: a `nats-server` child with WebSocket enabled (and
//! JetStream, for catch-up), and just enough of the NATS client protocol to publish over
//! TCP and subscribe over WebSocket: `CONNECT`, `SUB`, `PUB`, `PING`/`PONG`, and reading
//! `MSG`/`HMSG` (JetStream flow-control requests are answered).

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::CONNECT_TIMEOUT;

/// Longest wait for nats-server to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running nats-server. Dropping it kills the process and removes its directory.
pub struct NatsServer {
    child: Child,
    dir: PathBuf,
    /// The client (TCP) port.
    pub addr: SocketAddr,
    /// The WebSocket port.
    pub ws_addr: SocketAddr,
}

impl NatsServer {
    pub fn start(bin: &str) -> Result<NatsServer, String> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!(
            "tidegate-bench-nats-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|err| format!("creating {}: {err}", dir.display()))?;
        let (port, ws_port) = (free_port()?, free_port()?);
        // Defaults otherwise: 64 MiB pending per client before it is cut as a slow consumer,
        // no WebSocket compression. JetStream stores files (fsync every 2 min, its default).
        let config = format!(
            "listen: \"127.0.0.1:{port}\"\n\
             websocket {{ listen: \"127.0.0.1:{ws_port}\", no_tls: true, compression: false }}\n\
             jetstream {{ store_dir: \"{}\" }}\n\
             max_payload: 1MB\n",
            dir.join("jetstream").display()
        );
        let config_path = dir.join("nats.conf");
        std::fs::write(&config_path, config)
            .map_err(|err| format!("writing {}: {err}", config_path.display()))?;
        let child = Command::new(bin)
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|err| {
                format!("starting {bin}: {err} (Debian: apt-get install nats-server, or --nats-bin none)")
            })?;
        let server = NatsServer {
            child,
            dir,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            ws_addr: SocketAddr::from(([127, 0, 0, 1], ws_port)),
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(server.addr).is_err()
            || std::net::TcpStream::connect(server.ws_addr).is_err()
        {
            if started.elapsed() > START_TIMEOUT {
                return Err(format!("{bin} did not open ports {port} and {ws_port}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn version(bin: &str) -> String {
        Command::new(bin)
            .arg("--version")
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
            .unwrap_or_else(|err| format!("unknown ({err})"))
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port nothing listens on right now (the server binds it moments later).
fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|err| format!("finding a free port: {err}"))
}

/// `CONNECT` as the first thing a client sends.
pub const CONNECT: &[u8] =
    b"CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1,\"headers\":true}\r\n";

/// One message delivered to a subscription.
pub struct Delivery<'a> {
    pub sid: &'a [u8],
    pub reply: Option<&'a [u8]>,
    /// The header block of an `HMSG` (empty for `MSG`).
    pub headers: &'a [u8],
    pub payload: &'a [u8],
}

/// What a chunk of server bytes held besides deliveries.
#[derive(Default)]
pub struct Control {
    pub pings: usize,
    pub pongs: usize,
}

/// Incremental reader of the server → client protocol; a message may span chunks.
#[derive(Default)]
pub struct Decoder {
    buf: Vec<u8>,
    start: usize,
}

impl Decoder {
    /// Feeds bytes; calls `on_delivery` for each complete `MSG`/`HMSG`.
    pub fn feed(
        &mut self,
        data: &[u8],
        mut on_delivery: impl FnMut(Delivery<'_>),
    ) -> Result<Control, String> {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
        let mut control = Control::default();
        loop {
            let rest = &self.buf[self.start..];
            let Some(line_end) = memchr::memmem::find(rest, b"\r\n") else {
                break;
            };
            let line = &rest[..line_end];
            let mut fields = line.split(|&b| b == b' ').filter(|f| !f.is_empty());
            let op = fields.next().unwrap_or_default();
            let consumed = match op {
                b"MSG" | b"HMSG" => {
                    let fields: Vec<&[u8]> = fields.collect();
                    let headers_too = op == b"HMSG";
                    let numbers = if headers_too { 2 } else { 1 };
                    if fields.len() < 2 + numbers || fields.len() > 3 + numbers {
                        return Err(format!("bad line {}", String::from_utf8_lossy(line)));
                    }
                    let number = |field: &[u8]| -> Result<usize, String> {
                        std::str::from_utf8(field)
                            .ok()
                            .and_then(|text| text.parse().ok())
                            .ok_or_else(|| format!("bad size in {}", String::from_utf8_lossy(line)))
                    };
                    let total = number(fields[fields.len() - 1])?;
                    let header_len = if headers_too {
                        number(fields[fields.len() - 2])?
                    } else {
                        0
                    };
                    let reply = (fields.len() == 3 + numbers).then(|| fields[2]);
                    let body_start = line_end + 2;
                    if rest.len() < body_start + total + 2 {
                        break;
                    }
                    let body = &rest[body_start..body_start + total];
                    on_delivery(Delivery {
                        sid: fields[1],
                        reply,
                        headers: &body[..header_len.min(total)],
                        payload: &body[header_len.min(total)..],
                    });
                    body_start + total + 2
                }
                b"PING" => {
                    control.pings += 1;
                    line_end + 2
                }
                b"PONG" => {
                    control.pongs += 1;
                    line_end + 2
                }
                b"INFO" | b"+OK" => line_end + 2,
                _ => return Err(format!("server said {}", String::from_utf8_lossy(line))),
            };
            self.start += consumed;
        }
        Ok(control)
    }
}

/// A plain TCP client connection (the publisher's side).
pub struct TcpClient {
    stream: TcpStream,
    decoder: Decoder,
    buf: Vec<u8>,
}

impl TcpClient {
    pub async fn connect(addr: SocketAddr) -> Result<TcpClient, String> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connecting to nats {addr} timed out"))?
            .map_err(|err| format!("connecting to nats {addr}: {err}"))?;
        stream.set_nodelay(true).map_err(|err| err.to_string())?;
        let mut client = TcpClient {
            stream,
            decoder: Decoder::default(),
            buf: vec![0; 64 << 10],
        };
        client.write(CONNECT).await?;
        client.flush().await?;
        Ok(client)
    }

    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(|err| format!("writing to nats: {err}"))
    }

    /// Sends `PING` and reads until its `PONG`: everything written before was processed.
    pub async fn flush(&mut self) -> Result<(), String> {
        self.write(b"PING\r\n").await?;
        self.read_until(|_| false, true).await.map(|_| ())
    }

    /// Reads until a delivery satisfies `done` (or, with `pong`, the next `PONG`); answers
    /// the server's pings. Returns the payload of the delivery that satisfied `done`.
    pub async fn read_until(
        &mut self,
        mut done: impl FnMut(&Delivery<'_>) -> bool,
        pong: bool,
    ) -> Result<Vec<u8>, String> {
        loop {
            let read =
                tokio::time::timeout(super::REQUEST_TIMEOUT, self.stream.read(&mut self.buf))
                    .await
                    .map_err(|_| "nats answer timed out".to_owned())?
                    .map_err(|err| format!("reading from nats: {err}"))?;
            if read == 0 {
                return Err("nats closed the connection".into());
            }
            let mut found = None;
            let chunk = self.buf[..read].to_vec();
            let control = self.decoder.feed(&chunk, |delivery| {
                if found.is_none() && done(&delivery) {
                    found = Some(delivery.payload.to_vec());
                }
            })?;
            for _ in 0..control.pings {
                self.write(b"PONG\r\n").await?;
            }
            if let Some(payload) = found {
                return Ok(payload);
            }
            if pong && control.pongs > 0 {
                return Ok(Vec::new());
            }
        }
    }
}

/// `PUB subject len\r\npayload\r\n`.
pub fn publish_frame(out: &mut Vec<u8>, subject: &str, reply: Option<&str>, payload: &[u8]) {
    out.extend_from_slice(b"PUB ");
    out.extend_from_slice(subject.as_bytes());
    if let Some(reply) = reply {
        out.push(b' ');
        out.extend_from_slice(reply.as_bytes());
    }
    out.extend_from_slice(format!(" {}\r\n", payload.len()).as_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoder_reads_messages_split_across_chunks() {
        let wire = b"INFO {}\r\nMSG a 1 5\r\nhello\r\nPING\r\nHMSG b 2 r.1 12 14\r\nNATS/1.0\r\n\r\nhi\r\n";
        for split in 0..wire.len() {
            let mut decoder = Decoder::default();
            let mut seen = Vec::new();
            let mut pings = 0;
            for part in [&wire[..split], &wire[split..]] {
                let control = decoder
                    .feed(part, |d| {
                        seen.push((
                            d.sid.to_vec(),
                            d.reply.map(<[u8]>::to_vec),
                            d.headers.to_vec(),
                            d.payload.to_vec(),
                        ))
                    })
                    .expect("decodes");
                pings += control.pings;
            }
            assert_eq!(pings, 1, "split at {split}");
            assert_eq!(
                seen,
                vec![
                    (b"1".to_vec(), None, vec![], b"hello".to_vec()),
                    (
                        b"2".to_vec(),
                        Some(b"r.1".to_vec()),
                        b"NATS/1.0\r\n\r\n".to_vec(),
                        b"hi".to_vec()
                    ),
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn decoder_reports_server_errors() {
        let mut decoder = Decoder::default();
        let err = decoder
            .feed(b"-ERR 'Slow Consumer'\r\n", |_| {})
            .err()
            .expect("an error");
        assert!(err.contains("Slow Consumer"), "{err}");
    }
}
