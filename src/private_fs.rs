//! Files only the server's user may read: the data directory holds the database and the
//! token signing secret.

use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

/// Creates `dir` and any missing parents with mode 0700. An existing directory is left as
/// it is: its owner chose its mode.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// The text of a small file in `dir` (trimmed), made with `make` (mode 0600, synced)
/// when there is none yet; a file another process made first wins.
pub fn read_or_create(dir: &Path, name: &str, make: impl FnOnce() -> String) -> io::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => return Ok(text.trim().to_owned()),
        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
        Err(_) => {}
    }
    create_dir(dir)?;
    let text = make();
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path);
    match created {
        Ok(mut file) => {
            file.write_all(format!("{text}\n").as_bytes())?;
            file.sync_all()?;
            std::fs::File::open(dir)?.sync_all()?;
            Ok(text)
        }
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
            Ok(std::fs::read_to_string(&path)?.trim().to_owned())
        }
        Err(err) => Err(err),
    }
}
