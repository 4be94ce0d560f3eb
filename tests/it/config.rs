//! Bad configuration fails at start with one clear line and a non-zero exit; every flag
//! has a `TIDEGATE_*` environment twin.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use tempfile::TempDir;

fn tidegate(args: &[&str], env: &[(&str, &str)], data_dir: &TempDir) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tidegate"));
    command
        .args(args)
        .env("TIDEGATE_DATA_DIR", data_dir.path())
        .env("TIDEGATE_LISTEN", "127.0.0.1:0")
        .envs(env.iter().copied());
    command
}

/// Runs a start that must fail and returns its single stderr line.
fn start_fails(args: &[&str], env: &[(&str, &str)]) -> String {
    let dir = TempDir::new().expect("temp dir");
    let output = tidegate(args, env, &dir)
        .stdin(Stdio::null())
        .output()
        .expect("run tidegate");
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    assert!(
        !output.status.success(),
        "{args:?} {env:?} should fail; stderr: {stderr}"
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "{args:?} {env:?}: one line expected, got:\n{stderr}"
    );
    stderr
}

/// Flags, environment, and what the error line must mention.
type BadStart<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn bad_flags_and_env_fail_with_one_line() {
    let cases: &[BadStart] = &[
        (&["--listen", "nonsense"], &[], "--listen"),
        (&[], &[("TIDEGATE_LISTEN", "nonsense")], "--listen"),
        (&["--fsync", "sometimes"], &[], "--fsync"),
        (&["--max-record-bytes", "0"], &[], "--max-record-bytes"),
        (
            &[],
            &[("TIDEGATE_MAX_FETCH_BYTES", "0")],
            "--max-fetch-bytes",
        ),
        (
            &["--max-body-bytes", "10", "--max-record-bytes", "100"],
            &[],
            "cannot exceed",
        ),
        (&["--max-wait-ms", "soon"], &[], "--max-wait-ms"),
        (&["--no-such-flag"], &[], "--no-such-flag"),
        (
            &["--jwt-secret", "s", "--jwks-file", "/nonexistent"],
            &[],
            "--jwks-file",
        ),
        (
            &["--jwks-file", "/nonexistent/jwks.json"],
            &[],
            "/nonexistent/jwks.json",
        ),
        // More than any open-file limit holds.
        (
            &["--max-connections", "1000000000000"],
            &[],
            "--max-connections 1000000000000 needs an open-file limit",
        ),
        (&["--max-connections", "0"], &[], "--max-connections"),
        (
            &[],
            &[("TIDEGATE_QUOTA_REQUESTS_PER_SEC", "many")],
            "--quota-requests-per-sec",
        ),
    ];
    for (args, env, mentions) in cases {
        let line = start_fails(args, env);
        assert!(
            line.contains(mentions),
            "{args:?} {env:?}: {line:?} should mention {mentions}"
        );
    }
}

#[test]
fn data_dir_that_is_a_file_fails_with_one_line() {
    let dir = TempDir::new().expect("temp dir");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").expect("write file");
    let line = start_fails(&["--data-dir", file.to_str().expect("utf-8")], &[]);
    assert!(line.contains("--data-dir"), "{line}");
}

#[test]
fn a_busy_port_fails_with_one_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let line = start_fails(&["--auth", "none", "--listen", &addr], &[]);
    assert!(line.contains(&addr), "{line}");
}

#[test]
fn a_second_server_on_the_same_data_dir_fails_with_one_line() {
    let dir = TempDir::new().expect("temp dir");
    let mut first = tidegate(&["--auth", "none"], &[], &dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start first server");
    let mut stdout = BufReader::new(first.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read listening line");
    assert!(
        line.starts_with("tidegate listening on http://127.0.0.1:"),
        "{line}"
    );

    let output = tidegate(&["--auth", "none"], &[], &dir)
        .output()
        .expect("run second server");
    let _ = first.kill();
    let _ = first.wait();
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    assert!(!output.status.success(), "second server started: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("already in use"), "{stderr}");
}
