//! The first-run HMAC secret kept in the data directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use rand::RngCore;

use super::AuthError;

/// Name of the secret file inside the data directory: the secret as lowercase hex text.
pub const SECRET_FILE_NAME: &str = "jwt-secret";

/// Random bytes in a new secret: the output size of SHA-256, as RFC 7518 §3.2 asks for HS256.
const SECRET_LEN: usize = 32;

/// Reads `<data_dir>/jwt-secret`, or creates it with a new random secret if it does not exist.
///
/// Returns the secret bytes and whether they were just created (the caller then prints a
/// first admin token). The file is written under a temporary name with mode 0600, synced, and
/// only then hard-linked into place: a crash never leaves a partial secret behind, and if two
/// processes race, the loser reads the winner's secret instead of replacing it.
///
/// # Errors
/// [`AuthError::Io`] when the directory or file cannot be accessed, [`AuthError::Config`] when
/// the existing file is not a hex secret.
pub fn load_or_create_secret(data_dir: &Path) -> Result<(Vec<u8>, bool), AuthError> {
    let path = data_dir.join(SECRET_FILE_NAME);
    if let Some(secret) = read_secret(&path)? {
        return Ok((secret, false));
    }
    crate::private_fs::create_dir(data_dir).map_err(AuthError::io(data_dir))?;

    let mut secret = vec![0; SECRET_LEN];
    rand::rng().fill_bytes(&mut secret);
    let hex = hex::encode(&secret);
    let temp = data_dir.join(format!(
        ".{SECRET_FILE_NAME}.{:016x}.tmp",
        rand::random::<u64>()
    ));
    let linked =
        write_new(&temp, format!("{hex}\n").as_bytes()).and_then(|()| fs::hard_link(&temp, &path));
    // Best effort: the link (if any) keeps the data, and a stray temp file is harmless.
    let _ = fs::remove_file(&temp);
    match linked {
        Ok(()) => {
            // Make the new directory entry durable before anyone is handed a token.
            File::open(data_dir)
                .and_then(|dir| dir.sync_all())
                .map_err(AuthError::io(data_dir))?;
            Ok((secret, true))
        }
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
            let secret = read_secret(&path)?.ok_or_else(|| AuthError::Io {
                path: path.clone(),
                source: io::Error::new(io::ErrorKind::NotFound, "secret file vanished"),
            })?;
            Ok((secret, false))
        }
        Err(err) => Err(AuthError::io(path)(err)),
    }
}

/// `None` when the file does not exist yet.
fn read_secret(path: &Path) -> Result<Option<Vec<u8>>, AuthError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(AuthError::io(path)(err)),
    };
    if fs::metadata(path).is_ok_and(|meta| meta.permissions().mode() & 0o077 != 0) {
        tracing::warn!(path = %path.display(), "secret file is readable by other users; chmod 600 it");
    }
    let text = text.trim();
    let decoded = hex::decode(text).ok().filter(|_| !text.is_empty());
    decoded.map(Some).ok_or_else(|| {
        AuthError::Config(format!(
            "{} is not a hex secret; delete it to generate a new one (tokens it signed stop working)",
            path.display()
        ))
    })
}

fn write_new(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_private_file_once_then_reuses_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("data");
        let (secret, created) = load_or_create_secret(&data_dir).expect("create");
        assert!(created);
        assert_eq!(secret.len(), SECRET_LEN);
        let path = data_dir.join(SECRET_FILE_NAME);
        let mode = fs::metadata(&path).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let (again, created) = load_or_create_secret(&data_dir).expect("reuse");
        assert!(!created);
        assert_eq!(again, secret);
        // Only the secret itself is left behind, no temp files.
        assert_eq!(fs::read_dir(&data_dir).expect("read_dir").count(), 1);
    }

    #[test]
    fn corrupt_file_is_a_config_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        for junk in ["", "not hex", "abc", "+f"] {
            fs::write(dir.path().join(SECRET_FILE_NAME), junk).expect("write");
            assert!(
                matches!(load_or_create_secret(dir.path()), Err(AuthError::Config(_))),
                "{junk:?} should be rejected"
            );
        }
    }
}
