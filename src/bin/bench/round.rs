//! `tidegate-bench round`: the performance round's figures, each as a ratio to a reference
//! measured in the same invocation, `--runs` times in a row to show the spread.
//!
//! # References
//! - **The HTTP ceiling:** `tidegate-bench-bare` (a plain actix-web JSON endpoint, `bare.rs`)
//!   under the same single-record publish load as tidegate (64 connections).
//! - **The disk:** `fio` appending 4 KiB blocks with an `fdatasync` after each, in the
//!   directory the servers keep their data in (the system temp dir), for 5 s.
//! - **Push:** `nats-server` core, through the push suite's fan-out (one subscriber) and
//!   latency (100 subscribers, 1 000 records/s) parts.
//! - **Groups:** plain fetch of the same pre-filled records by as many clients.
//! - **Restart:** the same restart after kill -9 with `--restart-small-records` stored.
//!
//! # Rows
//! Each row is one of the targets: the ratio per run, the target, and whether
//! every run met it. The figures behind each ratio follow in a table per run. With
//! `--write FILE` the Markdown replaces what stands between `<!-- round:begin -->` and
//! `<!-- round:end -->` in FILE (BENCHMARKS.md) as well as going to stdout.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use serde::Deserialize;

use super::push::{self, StreamFigures};
use super::{
    Args, FsyncMode, Kind, Row, Server, call, client_runtime, create_topic, load_average,
    percentile, prefill, record_value, run_scenarios,
};

const BEGIN: &str = "<!-- round:begin -->";
const END: &str = "<!-- round:end -->";
/// Longest wait for `/readyz` after a restart.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Partitions of the restart topic.
const RESTART_PARTITIONS: u32 = 8;

#[derive(Debug, clap::Args)]
pub struct RoundArgs {
    /// Consecutive runs of the whole round; each gets a column.
    #[arg(long, default_value_t = 3)]
    runs: usize,

    /// Measured seconds per HTTP scenario (after 1 s of warm-up).
    #[arg(long, default_value_t = 5)]
    duration_secs: u64,

    /// The bare endpoint (default: `tidegate-bench-bare` next to this executable).
    #[arg(long)]
    bare_bin: Option<PathBuf>,

    /// The fio executable.
    #[arg(long, default_value = "fio")]
    fio_bin: String,

    /// The nats-server executable.
    #[arg(long, default_value = "nats-server")]
    nats_bin: String,

    /// Records stored before the kill of the large restart.
    #[arg(long, default_value_t = 3_000_000)]
    restart_records: u64,

    /// Records stored before the kill of the small restart.
    #[arg(long, default_value_t = 10_000)]
    restart_small_records: u64,

    /// Also write the report into FILE, between its round markers.
    #[arg(long, value_name = "FILE")]
    write: Option<PathBuf>,
}

/// Everything one run measured.
struct RunFigures {
    started: String,
    load: (String, String),
    bare_requests: f64,
    disk_fsyncs: f64,
    /// (fsync, scenario) → the row.
    rows: Vec<Row>,
    tidegate_push: StreamFigures,
    nats_push: StreamFigures,
    restart_small: Duration,
    restart_large: Duration,
}

impl RunFigures {
    fn row(&self, fsync: FsyncMode, kind: Kind, clients: usize) -> &Row {
        self.rows
            .iter()
            .find(|row| {
                row.fsync == fsync && row.scenario.kind == kind && row.scenario.clients == clients
            })
            .expect("every scenario of the round is measured")
    }

    fn records_per_sec(&self, fsync: FsyncMode, kind: Kind, clients: usize) -> f64 {
        let row = self.row(fsync, kind, clients);
        row.per_sec(row.records)
    }

    /// p99 and p50 of the publish scenario where p99 / p50 is largest.
    fn worst_tail(&self) -> Parts {
        self.rows
            .iter()
            .filter(|row| matches!(row.scenario.kind, Kind::Publish | Kind::Batch))
            .map(|row| {
                let ms = |q| percentile(&row.latencies, q) as f64 / 1e6;
                let unit = format!("ms, {} {}", row.fsync.as_str(), row.scenario);
                Parts::new(ms(0.99), ms(0.50).max(1e-6), &unit)
            })
            .fold(Parts::new(0.0, 1.0, "ms"), |worst, next| {
                if next.ratio() > worst.ratio() {
                    next
                } else {
                    worst
                }
            })
    }

    /// Group polls against plain fetch of the same records, records/s.
    fn group_against_fetch(&self, fsync: FsyncMode) -> Parts {
        Parts::new(
            self.records_per_sec(fsync, Kind::Group, 4),
            self.records_per_sec(fsync, Kind::Fetch, 4),
            "records/s",
        )
    }
}

/// The HTTP scenarios each fsync mode runs.
const SCENARIOS: &str = "publish:1,publish:64,batch:16,fetch:4,group:4";

pub fn run(server_bin: &Path, server_args: &[String], args: &RoundArgs) -> Result<(), String> {
    if args.runs == 0 || args.duration_secs == 0 {
        return Err("--runs and --duration-secs must be at least 1".into());
    }
    let bare_bin = match &args.bare_bin {
        Some(path) => path.clone(),
        None => server_bin.with_file_name("tidegate-bench-bare"),
    };
    if !bare_bin.is_file() {
        return Err(format!(
            "{} not found (cargo build --release --bins builds it)",
            bare_bin.display()
        ));
    }
    let runtime = client_runtime(0)?;
    let mut runs = Vec::new();
    for run in 1..=args.runs {
        eprintln!("round: run {run} of {}", args.runs);
        let figures = runtime.block_on(async {
            tokio::select! {
                figures = measure(server_bin, server_args, &bare_bin, args) => figures,
                _ = tokio::signal::ctrl_c() => Err("interrupted".to_owned()),
            }
        })?;
        runs.push(figures);
    }
    let report = report(&runs, args);
    print!("{report}");
    if let Some(path) = &args.write {
        write_between_markers(path, &report)?;
        eprintln!("round: wrote {}", path.display());
    }
    Ok(())
}

async fn measure(
    server_bin: &Path,
    server_args: &[String],
    bare_bin: &Path,
    args: &RoundArgs,
) -> Result<RunFigures, String> {
    let started = utc_now();
    let load_before = load_average();
    let http_args = |scenarios: &str| {
        Args::try_parse_from([
            "round".to_owned(),
            format!("--scenarios={scenarios}"),
            format!("--duration-secs={}", args.duration_secs),
        ])
        .map_err(|err| err.to_string())
    };

    eprintln!("round: the bare endpoint");
    let bare_args = http_args("publish:64")?;
    let bare = Server::start(bare_bin, &[], FsyncMode::Never, "warn", None)?;
    let bare_rows = run_scenarios(&bare_args, &bare, FsyncMode::Never).await?;
    bare.stop();
    let bare_requests = bare_rows[0].per_sec(bare_rows[0].ok);

    eprintln!("round: the disk's fsync rate (fio)");
    let disk_fsyncs = fio_fsyncs(&args.fio_bin)?;

    let tidegate_args = http_args(SCENARIOS)?;
    let mut rows = Vec::new();
    for fsync in [FsyncMode::Never, FsyncMode::Always] {
        let server = Server::start(
            server_bin,
            server_args,
            fsync,
            &tidegate_args.server_log,
            None,
        )?;
        eprintln!("round: tidegate --fsync {}", fsync.as_str());
        rows.extend(run_scenarios(&tidegate_args, &server, fsync).await?);
        server.stop();
    }
    let errors: u64 = rows.iter().chain(&bare_rows).map(Row::error_count).sum();
    if errors > 0 {
        return Err(format!("{errors} requests failed during the round"));
    }

    eprintln!("round: push against NATS");
    let (tidegate_push, nats_push) =
        push::round_figures((server_bin, server_args), &args.nats_bin).await?;

    eprintln!("round: restarts after kill -9");
    let restart_small =
        restart_after_kill(server_bin, server_args, args.restart_small_records).await?;
    let restart_large = restart_after_kill(server_bin, server_args, args.restart_records).await?;

    Ok(RunFigures {
        started,
        load: (load_before, load_average()),
        bare_requests,
        disk_fsyncs,
        rows,
        tidegate_push,
        nats_push,
        restart_small,
        restart_large,
    })
}

#[derive(Deserialize)]
struct FioOutput {
    jobs: Vec<FioJob>,
}

#[derive(Deserialize)]
struct FioJob {
    write: FioWrite,
}

#[derive(Deserialize)]
struct FioWrite {
    iops: f64,
}

/// 4 KiB appends, each followed by `fdatasync`, for 5 s in the servers' data directory.
fn fio_fsyncs(fio: &str) -> Result<f64, String> {
    let dir = std::env::temp_dir().join(format!("tidegate-bench-fio-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|err| format!("creating {}: {err}", dir.display()))?;
    let output = Command::new(fio)
        .args([
            "--name=fsync-rate",
            "--ioengine=sync",
            "--rw=write",
            "--bs=4k",
            "--size=256m",
            "--fdatasync=1",
            "--time_based",
            "--runtime=5",
            "--output-format=json",
        ])
        .arg(format!("--directory={}", dir.display()))
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    let output = output.map_err(|err| format!("running {fio} (apt-get install fio): {err}"))?;
    if !output.status.success() {
        return Err(format!(
            "fio failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let parsed: FioOutput = serde_json::from_slice(&output.stdout)
        .map_err(|err| format!("fio's JSON output: {err}"))?;
    parsed
        .jobs
        .first()
        .map(|job| job.write.iops)
        .filter(|iops| *iops > 0.0)
        .ok_or_else(|| "fio reported no writes".to_owned())
}

/// Stores `records` (8 partitions, `--fsync always`), kills the server with SIGKILL, starts
/// it again on the same data and times spawn → `/readyz` 200.
async fn restart_after_kill(
    server_bin: &Path,
    server_args: &[String],
    records: u64,
) -> Result<Duration, String> {
    let server = Server::start(server_bin, server_args, FsyncMode::Always, "warn", None)?;
    create_topic(server.addr, "restart", RESTART_PARTITIONS).await?;
    prefill(server.addr, "restart", &record_value(100), records).await?;
    let data_dir = server.kill_keeping_data();
    let started = Instant::now();
    let server = Server::start_on(server_bin, server_args, FsyncMode::Always, "warn", data_dir)?;
    let readyz = format!("GET /readyz HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr);
    loop {
        if let Ok((200, _)) = call(server.addr, readyz.as_bytes()).await {
            break;
        }
        if started.elapsed() > READY_TIMEOUT {
            return Err(format!("not ready {READY_TIMEOUT:?} after the restart"));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();
    eprintln!(
        "  {records} records: ready {:.0} ms after the restart",
        elapsed.as_secs_f64() * 1e3
    );
    server.stop();
    Ok(elapsed)
}

/// One target row: its ratio in each run.
struct Target {
    figure: &'static str,
    target: &'static str,
    /// Whether a ratio meets the target.
    met: fn(f64) -> bool,
    /// The figure and its reference, whose quotient is the ratio.
    parts: fn(&RunFigures) -> Parts,
}

struct Parts {
    figure: f64,
    reference: f64,
    /// Their units (and where from), for the row's note.
    unit: String,
}

impl Parts {
    fn new(figure: f64, reference: f64, unit: &str) -> Parts {
        Parts {
            figure,
            reference,
            unit: unit.to_owned(),
        }
    }

    fn ms(figure: Duration, reference: Duration) -> Parts {
        Parts::new(
            figure.as_secs_f64() * 1e3,
            reference.as_secs_f64() * 1e3,
            "ms",
        )
    }

    fn ratio(&self) -> f64 {
        self.figure / self.reference
    }

    fn detail(&self) -> String {
        let precision = if self.reference >= 100.0 { 0 } else { 2 };
        format!(
            "{:.precision$} / {:.precision$} {}",
            self.figure, self.reference, self.unit
        )
    }
}

fn targets() -> Vec<Target> {
    use FsyncMode::{Always, Never};
    vec![
        Target {
            figure: "single-record publish, 64 connections, `--fsync never`, ÷ the bare actix endpoint's requests/s",
            target: "≥ 0.7×",
            met: |r| r >= 0.7,
            parts: |f| {
                Parts::new(
                    f.records_per_sec(Never, Kind::Publish, 64),
                    f.bare_requests,
                    "req/s",
                )
            },
        },
        Target {
            figure: "same with `--fsync always`, ÷ the disk's fsyncs/s (fio, 4 KiB append + fdatasync)",
            target: "≥ 20×",
            met: |r| r >= 20.0,
            parts: |f| {
                Parts::new(
                    f.records_per_sec(Always, Kind::Publish, 64),
                    f.disk_fsyncs,
                    "req/s, fsyncs/s",
                )
            },
        },
        Target {
            figure: "1 connection, `--fsync always`, ÷ the disk's fsyncs/s",
            target: "≥ 0.8×",
            met: |r| r >= 0.8,
            parts: |f| {
                Parts::new(
                    f.records_per_sec(Always, Kind::Publish, 1),
                    f.disk_fsyncs,
                    "req/s, fsyncs/s",
                )
            },
        },
        Target {
            figure: "100-record batches, 16 connections, `--fsync never`, records/s ÷ the bare endpoint's requests/s",
            target: "≥ 20×",
            met: |r| r >= 20.0,
            parts: |f| {
                Parts::new(
                    f.records_per_sec(Never, Kind::Batch, 16),
                    f.bare_requests,
                    "records/s, req/s",
                )
            },
        },
        Target {
            figure: "p99 / p50, the worst publish scenario (1 and 64 single-record connections, 16 batch connections, both fsync modes)",
            target: "≤ 10×",
            met: |r| r <= 10.0,
            parts: RunFigures::worst_tail,
        },
        Target {
            figure: "publish → WebSocket delivery p50, 1 000 records/s to 100 subscribers, ÷ NATS core's",
            target: "≤ 1.5×",
            met: |r| r <= 1.5,
            parts: |f| Parts::ms(f.tidegate_push.latency_p50, f.nats_push.latency_p50),
        },
        Target {
            figure: "the same at p99",
            target: "≤ 1.5×",
            met: |r| r <= 1.5,
            parts: |f| Parts::ms(f.tidegate_push.latency_p99, f.nats_push.latency_p99),
        },
        Target {
            figure: "fan-out to 1 subscriber, deliveries/s, ÷ NATS core's",
            target: "≥ 1.0×",
            met: |r| r >= 1.0,
            parts: |f| Parts::new(f.tidegate_push.fanout_one, f.nats_push.fanout_one, "per s"),
        },
        Target {
            figure: "4 group members polling with `auto_commit`, ÷ 4 clients fetching the same records, `--fsync always`",
            target: "≥ 0.7×",
            met: |r| r >= 0.7,
            parts: |f| f.group_against_fetch(Always),
        },
        Target {
            figure: "the same, `--fsync never`",
            target: "≥ 0.7×",
            met: |r| r >= 0.7,
            parts: |f| f.group_against_fetch(Never),
        },
        Target {
            figure: "restart to `/readyz` after kill -9, `--restart-records` (3 M) ÷ `--restart-small-records` (10 k)",
            target: "≤ 1.5×",
            met: |r| r <= 1.5,
            parts: |f| Parts::ms(f.restart_large, f.restart_small),
        },
    ]
}

fn report(runs: &[RunFigures], args: &RoundArgs) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Generated by `tidegate-bench round --runs {} --duration-secs {} --restart-records {} --restart-small-records {}{}`; {} runs back to back.\n",
        args.runs,
        args.duration_secs,
        args.restart_records,
        args.restart_small_records,
        if args.write.is_some() {
            " --write BENCHMARKS.md"
        } else {
            ""
        },
        runs.len()
    );
    for (index, run) in runs.iter().enumerate() {
        let _ = writeln!(
            out,
            "- Run {}: started {}, load average {} before, {} after.",
            index + 1,
            run.started,
            run.load.0,
            run.load.1
        );
    }
    out.push('\n');
    let _ = write!(out, "| figure | target |");
    for index in 1..=runs.len() {
        let _ = write!(out, " run {index} |");
    }
    let _ = writeln!(out, " met |");
    let _ = write!(out, "|---|---|");
    for _ in runs {
        out.push_str("---:|");
    }
    out.push_str("---|\n");
    for target in targets() {
        let _ = write!(out, "| {} | {} |", target.figure, target.target);
        let mut met = 0;
        for run in runs {
            let parts = (target.parts)(run);
            let ratio = parts.ratio();
            if (target.met)(ratio) {
                met += 1;
            }
            let _ = write!(out, " {ratio:.2}× ({}) |", parts.detail());
        }
        let verdict = match met {
            0 => "no".to_owned(),
            n if n == runs.len() => "yes".to_owned(),
            n => format!("{n} of {}", runs.len()),
        };
        let _ = writeln!(out, " {verdict} |");
    }
    out.push_str("\nEvery HTTP scenario of each run, as measured (closed loop, one keep-alive connection per client, 100-byte values, 1 s warm-up):\n\n");
    out.push_str(
        "| run | fsync | scenario | requests/s | records/s | p50 ms | p99 ms | max ms |\n",
    );
    out.push_str("|---:|---|---|---:|---:|---:|---:|---:|\n");
    for (index, run) in runs.iter().enumerate() {
        for row in &run.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.0} | {:.0} | {:.3} | {:.3} | {:.3} |",
                index + 1,
                row.fsync.as_str(),
                row.scenario,
                row.per_sec(row.ok),
                row.per_sec(row.records),
                percentile(&row.latencies, 0.50) as f64 / 1e6,
                percentile(&row.latencies, 0.99) as f64 / 1e6,
                row.latencies.last().copied().unwrap_or(0) as f64 / 1e6,
            );
        }
    }
    out
}

/// Replaces the text between the round markers of `path` with `report`.
fn write_between_markers(path: &Path, report: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| format!("reading {}: {err}", path.display()))?;
    let (Some(begin), Some(end)) = (text.find(BEGIN), text.find(END)) else {
        return Err(format!(
            "{} has no `{BEGIN}` … `{END}` markers to write between",
            path.display()
        ));
    };
    if end < begin {
        return Err(format!(
            "{}: `{END}` comes before `{BEGIN}`",
            path.display()
        ));
    }
    let updated = format!("{}{BEGIN}\n{report}{}", &text[..begin], &text[end..]);
    std::fs::write(path, updated).map_err(|err| format!("writing {}: {err}", path.display()))
}

/// The current UTC time as `YYYY-MM-DD HH:MM UTC`, from `date` (no time crate needed).
fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|text| !text.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}
