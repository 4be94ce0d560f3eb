//! `tidegate check`: reports whether a data directory's database is intact, without
//! changing a byte of it.
//!
//! redb's integrity check repairs what it can, and even a plain open writes (recovery after
//! a crash, the shutdown header). So the check opens the database over a copy-on-write
//! view of the file: reads come from the file, writes land in memory and are dropped at
//! the end. On that view it runs redb's own check (checksums of every page and the
//! allocator state), then reads every table the log keeps and decodes every batch.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, StorageBackend};

use super::DATABASE_FILE;
use super::codec;
use super::store::{
    self, BATCHES, IDEMPOTENCY, IdempotentReply, PARTITION_BYTES, PARTITIONS, TOPICS, decode_config,
};
use crate::panics;

/// What the check found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// One line per finding, in the order found.
    pub findings: Vec<String>,
    /// False when any finding is damage (an unclean shutdown alone is not).
    pub intact: bool,
    pub topics: usize,
    pub partitions: usize,
    pub batches: u64,
    pub records: u64,
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for finding in &self.findings {
            writeln!(f, "{finding}")?;
        }
        writeln!(
            f,
            "{} topics, {} partitions, {} batches, {} records",
            self.topics, self.partitions, self.batches, self.records
        )?;
        write!(f, "{}", if self.intact { "intact" } else { "DAMAGED" })
    }
}

/// Why the check could not run at all.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CheckError(String);

/// Checks `<data_dir>/tidegate.redb`, leaving the file exactly as it is.
///
/// # Errors
/// When there is no database, it cannot be read, or a server has it open.
pub fn check(data_dir: &Path) -> Result<CheckReport, CheckError> {
    let path = data_dir.join(DATABASE_FILE);
    let file = File::open(&path)
        .map_err(|err| CheckError(format!("cannot open {}: {err}", path.display())))?;
    // A running server holds an exclusive lock, and its file changes under us.
    match file.try_lock_shared() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(CheckError(format!(
                "{} is in use by a running tidegate; stop it first, or check a copy",
                path.display()
            )));
        }
        Err(std::fs::TryLockError::Error(err)) => {
            return Err(CheckError(format!("cannot lock {}: {err}", path.display())));
        }
    }
    let len = file
        .metadata()
        .map_err(|err| CheckError(format!("cannot read {}: {err}", path.display())))?
        .len();
    let mut report = CheckReport {
        intact: true,
        ..CheckReport::default()
    };
    report.findings.push(format!(
        "checking {} ({len} bytes) without writing to it",
        path.display()
    ));
    if len == 0 {
        report.intact = false;
        report
            .findings
            .push("the file is empty: no database is left in it".into());
        return Ok(report);
    }
    let view = CopyOnWrite::new(file, len);
    let opened = panics::catch(|| Database::builder().create_with_backend(view));
    let mut db = match opened {
        Ok(Ok(db)) => db,
        Ok(Err(err)) => return Ok(damaged(report, format!("redb cannot open it: {err}"))),
        Err(panic) => {
            return Ok(damaged(
                report,
                format!("redb panicked opening it: {panic}"),
            ));
        }
    };
    match panics::catch_mut(|| db.check_integrity()) {
        Ok(Ok(true)) => report.findings.push("redb integrity check: passed".into()),
        Ok(Ok(false)) => report.findings.push(
            "redb integrity check: repairable (redb would rebuild its allocator state at the \
             next start; no committed data is affected)"
                .into(),
        ),
        Ok(Err(err)) => {
            return Ok(damaged(
                report,
                format!("redb integrity check failed: {err}"),
            ));
        }
        Err(panic) => {
            return Ok(damaged(
                report,
                format!("redb panicked checking it: {panic}"),
            ));
        }
    }
    let read = panics::catch_mut(|| -> Result<(), String> {
        let txn = db.begin_read().map_err(|err| err.to_string())?;
        check_tables(&txn, &mut report)
    });
    match read {
        Ok(Ok(())) => {}
        Ok(Err(problem)) => report = damaged(report, problem),
        Err(panic) => report = damaged(report, format!("redb panicked reading it: {panic}")),
    }
    Ok(report)
}

fn damaged(mut report: CheckReport, finding: String) -> CheckReport {
    report.intact = false;
    report.findings.push(finding);
    report
}

/// Reads every table of the log: topic configs, partitions, every batch (decoded, and
/// tiling each partition's offsets without gaps), every idempotency entry.
fn check_tables(txn: &ReadTransaction, report: &mut CheckReport) -> Result<(), String> {
    let err = |e: redb::Error| e.to_string();
    let topics = txn.open_table(TOPICS).map_err(|e| err(e.into()))?;
    let starts = txn.open_table(PARTITIONS).map_err(|e| err(e.into()))?;
    let batches = txn.open_table(BATCHES).map_err(|e| err(e.into()))?;
    // Absent in a database from before it; the server counts and stores the sizes at start.
    let sizes = match txn.open_table(PARTITION_BYTES) {
        Ok(sizes) => Some(sizes),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(err(e.into())),
    };
    let mut problems = Vec::new();
    for entry in topics.iter().map_err(|e| err(e.into()))? {
        let (name, config) = entry.map_err(|e| err(e.into()))?;
        let name = name.value().to_owned();
        let config = match decode_config(config.value()) {
            Ok(config) => config,
            Err(e) => {
                problems.push(format!("topic {name}: {e}"));
                continue;
            }
        };
        report.topics += 1;
        for partition in 0..config.partitions {
            report.partitions += 1;
            let start = starts
                .get((name.as_str(), partition))
                .map_err(|e| err(e.into()))?
                .map(|v| v.value());
            let Some(start) = start else {
                problems.push(format!("{name}/{partition}: no log start offset stored"));
                continue;
            };
            let mut expected = None;
            let mut bytes = 0u64;
            let range = (name.as_str(), partition, 0)..=(name.as_str(), partition, u64::MAX);
            for batch in batches.range(range).map_err(|e| err(e.into()))? {
                let (key, value) = batch.map_err(|e| err(e.into()))?;
                let base = key.value().2;
                report.batches += 1;
                bytes += value.value().len() as u64;
                let count = match codec::decode(value.value()) {
                    Ok(records) => records.len() as u64,
                    Err(e) => {
                        problems.push(format!("{name}/{partition} batch at {base}: {e}"));
                        break;
                    }
                };
                report.records += count;
                if let Some(expected) = expected
                    && base != expected
                {
                    problems.push(format!(
                        "{name}/{partition}: a batch starts at {base}, {expected} was expected (gap or overlap)"
                    ));
                }
                if expected.is_none() && base + count <= start && count > 0 {
                    problems.push(format!(
                        "{name}/{partition}: batch at {base} lies below the log start {start}"
                    ));
                }
                expected = Some(base + count);
            }
            let stored = match &sizes {
                Some(sizes) => sizes
                    .get((name.as_str(), partition))
                    .map_err(|e| err(e.into()))?
                    .map(|v| v.value()),
                None => None,
            };
            if let Some(stored) = stored
                && stored != bytes
            {
                problems.push(format!(
                    "{name}/{partition}: {stored} bytes recorded, its batches hold {bytes}"
                ));
            }
        }
    }
    let idempotency = txn.open_table(IDEMPOTENCY).map_err(|e| err(e.into()))?;
    for entry in idempotency.iter().map_err(|e| err(e.into()))? {
        let (key, value) = entry.map_err(|e| err(e.into()))?;
        if serde_json::from_slice::<IdempotentReply>(value.value()).is_err() {
            let (topic, _) = key.value();
            problems.push(format!("{topic}: an idempotency entry does not decode"));
        }
    }
    // The same loader the server starts with must succeed.
    if let Err(e) = store::load_topics(txn) {
        problems.push(format!("loading topics as the server does: {e}"));
    }
    match problems.len() {
        0 => Ok(()),
        n => {
            report.findings.extend(problems.into_iter().take(20));
            Err(format!("{n} problems in the log's tables"))
        }
    }
}

/// Size of the blocks the copy-on-write view keeps written data in.
const BLOCK: u64 = 4096;

/// A file seen through an in-memory layer: reads come from the layer where written, else
/// from the file; writes and length changes stay in memory.
#[derive(Debug)]
struct CopyOnWrite {
    file: File,
    layer: Mutex<Layer>,
}

#[derive(Debug)]
struct Layer {
    len: u64,
    /// File bytes at or past this offset read as zeros (the view was shrunk over them).
    file_end: u64,
    blocks: HashMap<u64, Box<[u8]>>,
}

impl CopyOnWrite {
    fn new(file: File, len: u64) -> CopyOnWrite {
        CopyOnWrite {
            file,
            layer: Mutex::new(Layer {
                len,
                file_end: len,
                blocks: HashMap::new(),
            }),
        }
    }

    fn layer(&self) -> std::sync::MutexGuard<'_, Layer> {
        self.layer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The file's bytes of block `index`, zeros past its (visible) end.
    fn file_block(&self, index: u64, file_end: u64) -> io::Result<Box<[u8]>> {
        let mut block = vec![0u8; BLOCK as usize].into_boxed_slice();
        let start = index * BLOCK;
        if start < file_end {
            let visible = (file_end - start).min(BLOCK) as usize;
            self.file.read_exact_at(&mut block[..visible], start)?;
        }
        Ok(block)
    }
}

fn out_of_range() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end")
}

impl StorageBackend for CopyOnWrite {
    fn len(&self) -> io::Result<u64> {
        Ok(self.layer().len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let layer = self.layer();
        if offset + out.len() as u64 > layer.len {
            return Err(out_of_range());
        }
        let mut done = 0usize;
        while done < out.len() {
            let at = offset + done as u64;
            let (index, within) = (at / BLOCK, (at % BLOCK) as usize);
            let n = (BLOCK as usize - within).min(out.len() - done);
            let target = &mut out[done..done + n];
            match layer.blocks.get(&index) {
                Some(block) => target.copy_from_slice(&block[within..within + n]),
                None => {
                    let block = self.file_block(index, layer.file_end)?;
                    target.copy_from_slice(&block[within..within + n]);
                }
            }
            done += n;
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut layer = self.layer();
        if len < layer.len {
            // Bytes cut off must read as zeros if the view grows again.
            let keep_blocks = len.div_ceil(BLOCK);
            layer.blocks.retain(|index, _| *index < keep_blocks);
            if !len.is_multiple_of(BLOCK) {
                let index = len / BLOCK;
                let file_end = layer.file_end;
                let mut block = match layer.blocks.remove(&index) {
                    Some(block) => block,
                    None => self.file_block(index, file_end)?,
                };
                block[(len % BLOCK) as usize..].fill(0);
                layer.blocks.insert(index, block);
            }
            layer.file_end = layer.file_end.min(len);
        }
        layer.len = len;
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut layer = self.layer();
        if offset + data.len() as u64 > layer.len {
            return Err(out_of_range());
        }
        let mut done = 0usize;
        while done < data.len() {
            let at = offset + done as u64;
            let (index, within) = (at / BLOCK, (at % BLOCK) as usize);
            let n = (BLOCK as usize - within).min(data.len() - done);
            if !layer.blocks.contains_key(&index) {
                let block = self.file_block(index, layer.file_end)?;
                layer.blocks.insert(index, block);
            }
            let block = layer.blocks.get_mut(&index).expect("inserted above");
            block[within..within + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_view_reads_the_file_and_keeps_writes_in_memory() {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        let original: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        file.write_all(&original).expect("write");
        let view = CopyOnWrite::new(file.reopen().expect("reopen"), original.len() as u64);

        let mut out = vec![0u8; 5000];
        view.read(3000, &mut out).expect("read");
        assert_eq!(out, original[3000..8000]);

        view.write(4090, &[0xAA; 20]).expect("write");
        view.read(4080, &mut out[..40]).expect("read");
        assert_eq!(&out[..10], &original[4080..4090]);
        assert_eq!(&out[10..30], &[0xAA; 20]);
        assert_eq!(&out[30..40], &original[4110..4120]);

        view.set_len(5000).expect("shrink");
        view.set_len(12_000).expect("grow");
        view.read(4990, &mut out[..20]).expect("read");
        assert_eq!(&out[..10], &original[4990..5000]);
        assert_eq!(&out[10..20], &[0u8; 10], "cut-off bytes read as zeros");
        assert!(view.read(11_999, &mut out[..2]).is_err());

        let on_disk = std::fs::read(file.path()).expect("read back");
        assert_eq!(on_disk, original, "the file itself never changes");
    }
}
