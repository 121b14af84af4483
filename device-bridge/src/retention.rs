//! Nothing kept longer than it must be: once an hour, the bridge deletes the
//! journal's tombstones of sends resolved more than `RETENTION_DAYS` ago, dead
//! letters refused that long ago, and media files stored that long ago that no
//! pending send, undelivered event or dead letter refers to. (Contents of
//! resolved sends are blanked at once, see [`journal`].) Inbound media stay at
//! least as long as the worker's download links (`MEDIA_LINK_TTL_S`, 7 days)
//! with the default of 30 days.

use std::time::{Duration, SystemTime};

use crate::db::Db;
use crate::journal;
use crate::media::MediaStore;
use crate::outbox::Outbox;

const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// What one sweep deleted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub journal: usize,
    pub dead_letters: usize,
    pub media: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("storage: {0}")]
    Storage(#[from] rusqlite::Error),
    #[error("media store: {0}")]
    Media(#[from] std::io::Error),
}

/// Deletes what was settled before `now - keep`.
pub fn sweep(
    db: &Db,
    outbox: &Outbox,
    media: &MediaStore,
    now: SystemTime,
    keep: Duration,
) -> Result<Swept, SweepError> {
    let before = now.checked_sub(keep).unwrap_or(SystemTime::UNIX_EPOCH);
    let before_ms = before.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let journal = journal::prune(&db.lock(), before_ms)?;
    let dead_letters = outbox.prune_dead_letters(before_ms)?;
    let referenced = journal::referenced_media(&db.lock())?;
    let media = media.prune(before, &referenced)?;
    Ok(Swept { journal, dead_letters, media })
}

/// Sweeps at start and then every hour, forever.
pub async fn run(db: Db, outbox: Outbox, media: MediaStore, keep: Duration) {
    let mut every = tokio::time::interval(SWEEP_EVERY.min(keep.max(Duration::from_secs(1))));
    loop {
        every.tick().await;
        let (db, outbox, media) = (db.clone(), outbox.clone(), media.clone());
        // Directory walks and deletes: off the async workers.
        let swept = tokio::task::spawn_blocking(move || sweep(&db, &outbox, &media, SystemTime::now(), keep)).await;
        match swept {
            Ok(Ok(swept)) if swept != Swept::default() => {
                tracing::info!(
                    journal = swept.journal,
                    dead_letters = swept.dead_letters,
                    media = swept.media,
                    "retention: deleted what is past RETENTION_DAYS"
                );
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "retention sweep failed; trying again next time"),
            Err(e) => tracing::error!(error = %e, "retention sweep panicked; trying again next time"),
        }
    }
}
