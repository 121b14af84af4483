//! The content-addressed media store: every file the bridge sends or received,
//! named by the SHA-256 of its bytes under `$WAGATE_DATA_DIR/media/`.
//!
//! The worker uploads a file once and then refers to it by hash in any number
//! of sends; a send journaled before a crash still finds its bytes after it.
//! Naming by content makes every write idempotent, and two uploads of one file
//! one file on disk.

use std::collections::HashSet;
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Bytes;
use sha2::{Digest, Sha256};

/// The error code for a hash with no file behind it.
pub const MEDIA_NOT_FOUND: &str = "media_not_found";

/// Written first under this prefix, then renamed into place, so a reader never sees half a file.
const TEMP_PREFIX: &str = ".tmp-";
const MAX_MIME_LEN: usize = 255;

/// Lowercase hex SHA-256: the only way to name a stored file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sha256Hex(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sha256 must be 64 lowercase hex digits")]
pub struct InvalidSha256;

impl Sha256Hex {
    pub fn parse(s: &str) -> Result<Self, InvalidSha256> {
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidSha256)
        }
    }

    pub fn of(bytes: &[u8]) -> Self {
        Self(hex::encode(Sha256::digest(bytes)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a MIME type such as `image/jpeg` or `audio/ogg; codecs=opus`; WhatsApp
/// picks its player by it, so a value that is not one is refused early.
pub fn parse_mime_type(s: &str) -> Result<String, String> {
    let s = s.trim();
    let essence = s.split(';').next().unwrap_or_default().trim();
    let token =
        |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b));
    let well_formed = matches!(essence.split_once('/'), Some((kind, sub)) if token(kind) && token(sub));
    if well_formed && s.len() <= MAX_MIME_LEN && s.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(format!("{s:?} is not a MIME type such as image/jpeg"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PutError {
    #[error("the body's sha256 is {actual}, not the {expected} it was stored under")]
    Mismatch { expected: Sha256Hex, actual: Sha256Hex },
    #[error("media storage failed: {0}")]
    Io(#[from] io::Error),
}

/// A file present in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMedia {
    sha256: Sha256Hex,
    size: u64,
    path: PathBuf,
}

impl StoredMedia {
    pub fn sha256(&self) -> &Sha256Hex {
        &self.sha256
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The whole file; at most [`wagate_contract::wire::MAX_MEDIA_BYTES`], as every way in checks.
    pub async fn read(&self) -> io::Result<Vec<u8>> {
        let path = self.path.clone();
        blocking(move || std::fs::read(path)).await
    }
}

/// Cheap to clone: every clone uses the same directory.
#[derive(Debug, Clone)]
pub struct MediaStore {
    dir: Arc<PathBuf>,
}

impl MediaStore {
    /// Creates the directory if needed, and removes what writes a crash interrupted.
    pub fn open(dir: PathBuf) -> io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(Self { dir: Arc::new(dir) })
    }

    /// The stored file with this hash, if there is one. Only a metadata lookup.
    pub fn find(&self, sha256: &Sha256Hex) -> io::Result<Option<StoredMedia>> {
        let path = self.dir.join(sha256.as_str());
        match std::fs::metadata(&path) {
            Ok(meta) => Ok(Some(StoredMedia { sha256: sha256.clone(), size: meta.len(), path })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Stores `bytes` under their hash, which must be `expected` when given. Idempotent:
    /// storing bytes already present changes nothing.
    pub async fn put(&self, bytes: Bytes, expected: Option<Sha256Hex>) -> Result<StoredMedia, PutError> {
        let store = self.clone();
        blocking(move || {
            let sha256 = Sha256Hex::of(&bytes);
            if let Some(expected) = expected.filter(|expected| *expected != sha256) {
                return Err(PutError::Mismatch { expected, actual: sha256 });
            }
            let size = bytes.len() as u64;
            match store.find(&sha256)? {
                Some(stored) if stored.size == size => {
                    // Stored again: as fresh as a new file, for [`MediaStore::prune`].
                    std::fs::File::options().write(true).open(&stored.path)?.set_modified(SystemTime::now())?;
                    Ok(stored)
                }
                // Absent, or cut short by a disk that lied about a sync: (re)write it.
                _ => Ok(StoredMedia { path: store.write(&sha256, &bytes)?, sha256, size }),
            }
        })
        .await
    }

    /// Deletes the files last stored before `before` whose hash is not in
    /// `referenced`; returns how many went. A file stored again meanwhile is
    /// fresh (its time is renewed) and stays.
    pub fn prune(&self, before: SystemTime, referenced: &HashSet<String>) -> io::Result<usize> {
        let mut removed = 0;
        for entry in std::fs::read_dir(self.dir.as_ref())? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if Sha256Hex::parse(&name).is_err() || referenced.contains(&name) {
                continue;
            }
            if entry.metadata()?.modified()? < before {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(removed)
    }

    fn write(&self, sha256: &Sha256Hex, bytes: &[u8]) -> io::Result<PathBuf> {
        let path = self.dir.join(sha256.as_str());
        let temp = self.dir.join(format!("{TEMP_PREFIX}{sha256}-{}", hex::encode(rand::random::<[u8; 8]>())));
        let written = write_synced(&temp, bytes).and_then(|()| std::fs::rename(&temp, &path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
        sync_dir(&self.dir)?;
        Ok(path)
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = std::fs::File::create_new(path)?;
    file.write_all(bytes)?;
    // The rename must not reach the disk before the bytes it names.
    file.sync_all()
}

/// Makes the rename itself durable.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// Runs file I/O (and hashing of up to 16 MiB) off the async workers.
async fn blocking<T: Send + 'static, E: From<io::Error> + Send + 'static>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, E> {
    tokio::task::spawn_blocking(work).await.map_err(|e| E::from(io::Error::other(e)))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (MediaStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        (MediaStore::open(dir.path().join("media")).unwrap(), dir)
    }

    #[tokio::test]
    async fn files_are_stored_once_under_their_hash() {
        let (store, dir) = store();
        let bytes = Bytes::from_static(b"hello");
        let sha = Sha256Hex::of(&bytes);
        assert_eq!(sha.as_str(), "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        assert_eq!(store.find(&sha).unwrap(), None);

        let stored = store.put(bytes.clone(), Some(sha.clone())).await.unwrap();
        assert_eq!((stored.sha256(), stored.size()), (&sha, 5));
        assert_eq!(store.put(bytes, None).await.unwrap(), stored);
        assert_eq!(store.find(&sha).unwrap(), Some(stored.clone()));
        assert_eq!(stored.read().await.unwrap(), b"hello");
        let names: Vec<_> =
            std::fs::read_dir(dir.path().join("media")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, [sha.as_str()]);
    }

    #[tokio::test]
    async fn a_body_that_does_not_match_its_name_is_not_stored() {
        let (store, _dir) = store();
        let claimed = Sha256Hex::of(b"something else");
        let err = store.put(Bytes::from_static(b"hello"), Some(claimed.clone())).await.unwrap_err();
        assert!(matches!(&err, PutError::Mismatch { expected, .. } if *expected == claimed), "{err}");
        assert_eq!(store.find(&Sha256Hex::of(b"hello")).unwrap(), None);
    }

    #[tokio::test]
    async fn interrupted_writes_are_cleaned_up_and_short_files_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let media = dir.path().join("media");
        std::fs::create_dir_all(&media).unwrap();
        std::fs::write(media.join(format!("{TEMP_PREFIX}abc")), b"half").unwrap();
        let sha = Sha256Hex::of(b"hello");
        std::fs::write(media.join(sha.as_str()), b"hel").unwrap();

        let store = MediaStore::open(media.clone()).unwrap();
        assert_eq!(std::fs::read_dir(&media).unwrap().count(), 1);
        let stored = store.put(Bytes::from_static(b"hello"), None).await.unwrap();
        assert_eq!(stored.read().await.unwrap(), b"hello");
    }

    #[test]
    fn hashes_and_mime_types_are_parsed() {
        assert!(Sha256Hex::parse(&"ab".repeat(32)).is_ok());
        for bad in ["", "AB".repeat(32).as_str(), &"ab".repeat(31), &"zz".repeat(32), "../etc/passwd"] {
            assert_eq!(Sha256Hex::parse(bad), Err(InvalidSha256), "{bad:?}");
        }
        assert_eq!(parse_mime_type("image/JPEG").unwrap(), "image/jpeg");
        assert_eq!(parse_mime_type("audio/ogg; codecs=opus").unwrap(), "audio/ogg; codecs=opus");
        assert_eq!(parse_mime_type("application/vnd.ms-excel").unwrap(), "application/vnd.ms-excel");
        for bad in ["", "image", "image/", "/png", "image/png\nx: y", "im age/png", "ïmage/png"] {
            assert!(parse_mime_type(bad).is_err(), "{bad:?}");
        }
    }
}
