//! SQLite's background WAL checkpoint: a reader copies the WAL into the database file,
//! and the writer's short step lets the next write start the WAL over.

use std::sync::Weak;
use std::time::Duration;

use sqlx::AnyPool;

use crate::group::Writer;

/// Copies the WAL back into the database file every half second, and lets the writer
/// start the WAL over. SQLite would otherwise checkpoint inside the commit that crosses
/// 1,000 pages, on the one writer, fsync included: about 5 % of the writer's time under
/// webhook load and the worst of its latency (see BENCHMARKS.md).
///
/// Two steps, each `PASSIVE` (never waits for a reader or the writer's lock in SQLite):
/// 1. A reader connection copies what the WAL holds, beside the writer: the bulk of it.
/// 2. The writer connection itself, between two groups, copies the few frames
///    committed meanwhile. Only then is the whole WAL in the database file while no
///    one writes, which is the one moment SQLite can start the WAL over (the next write
///    transaction rewinds it). Without step 2, under steady load the writer always had
///    frames past the reader's checkpoint, so the WAL was never rewound: it grew to
///    tens of MiB, and every commit wrote to new file blocks that the filesystem first
///    allocated and zeroed (`ext4_da_write_begin`, `zero_user_segments`: about a tenth
///    of the server's CPU under webhook load, BENCHMARKS.md).
///
///    The checkpointer never waits for the writer, nor queues before a transaction:
///    it takes the writer only if it is idle with no group open (a try-lock). If the
///    writer is busy, the writer runs the step itself after its next group commit,
///    once that group's callers have their answer (`group.rs`).
///
/// Step 2 holds the writer, so every write waits for it: for the frames it copies and
/// for the database file's fsync. Under checkout load one reader pass took 20 ms (the
/// WAL held 18,000 frames), the frames committed meanwhile were left to step 2, and it
/// held the writer 15 to 22 ms twice a second: every caller in flight waited, which was
/// the checkout's whole p99 (BENCHMARKS.md). So step 1 is repeated, each pass copying
/// what was committed during the last, until a pass finds fewer than [`FEW_FRAMES`]
/// frames to copy (or after [`MAX_PASSES`]); step 2 then copies about that few, and
/// holds the writer 2 to 4 ms.
///
/// Stops when the pools close.
pub(crate) async fn in_background(read: AnyPool, writer: Weak<Writer>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(w) = writer.upgrade() else {
            return;
        };
        if read.is_closed() || w.is_closed() {
            return;
        }
        if let Err(e) = copy_most_of_the_wal(&read, w.durability.as_deref()).await {
            if read.is_closed() {
                return;
            }
            tracing::debug!(error = %e, "WAL checkpoint failed; trying again shortly");
        }
        w.checkpoint_when_idle().await;
    }
}

/// A reader pass that found fewer frames to copy than this is the last one: the
/// writer's step then copies about as many (measured: 2 to 4 ms, fsync included).
const FEW_FRAMES: i64 = 256;
/// At most this many reader passes a round, so that a WAL that grows as fast as it is
/// copied still gets the writer's step (and is started over).
const MAX_PASSES: usize = 6;

/// What a reader pass reported: `PRAGMA wal_checkpoint(PASSIVE)`'s row.
#[derive(Debug, Clone, Copy)]
struct Pass {
    /// Another checkpoint held the WAL (the writer's own step): nothing was copied.
    busy: bool,
    /// Frames in the WAL (-1 if none was looked at).
    frames: i64,
    /// Frames copied into the database file by now.
    copied: i64,
}

/// Whether another reader pass is worth running after `now` (`before` the pass before
/// it): only while the last one found many frames to copy. A WAL started over since
/// (fewer frames than before), or a checkpoint that another connection holds, is left
/// to the writer's step. A pass that copies less than it finds (a reader still reads
/// an older version of the pages) goes on, up to [`MAX_PASSES`].
fn another_pass(before: Option<Pass>, now: Pass) -> bool {
    if now.busy || now.frames < 0 {
        return false;
    }
    match before {
        // What was committed while the first pass ran is not known yet.
        None => true,
        Some(b) if now.frames < b.frames => false,
        Some(b) => now.frames - b.copied >= FEW_FRAMES,
    }
}

/// Step 1 of the background checkpoint: reader passes until one finds few frames to
/// copy (see [`in_background`]). While they run, and until the writer's
/// next commit after them, `durability` sends the writer's commits to its disk thread:
/// a pass that copies the whole WAL lets that commit start the WAL over, and SQLite
/// syncs the new header inside it.
async fn copy_most_of_the_wal(
    read: &AnyPool,
    durability: Option<&crate::inline::Durability>,
) -> Result<(), sqlx::Error> {
    let _others_on_disk_thread = durability.map(|d| d.another_checkpoints());
    let mut before = None;
    let mut passes = 0;
    loop {
        passes += 1;
        let row = sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(read)
            .await;
        let now = match row {
            Ok((busy, frames, copied)) => Pass {
                busy: busy != 0,
                frames,
                copied,
            },
            Err(e) => return Err(e),
        };
        if passes == MAX_PASSES || !another_pass(before, now) {
            return Ok(());
        }
        before = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::{another_pass, Pass, FEW_FRAMES};

    fn pass(frames: i64, copied: i64) -> Pass {
        Pass {
            busy: false,
            frames,
            copied,
        }
    }

    #[test]
    fn passes_go_on_while_each_finds_many_frames_to_copy() {
        // The first pass is always followed by one more: it cannot know what was
        // committed while it ran.
        assert!(another_pass(None, pass(18_000, 18_000)));
        assert!(another_pass(None, pass(0, 0)));
        // Many committed during the last pass: again. Few: the writer's step copies them.
        assert!(another_pass(
            Some(pass(18_000, 18_000)),
            pass(19_000, 19_000)
        ));
        assert!(!another_pass(
            Some(pass(18_000, 18_000)),
            pass(18_000 + FEW_FRAMES - 1, 18_000 + FEW_FRAMES - 1)
        ));
        assert!(!another_pass(Some(pass(500, 500)), pass(500, 500)));
    }

    #[test]
    fn a_wal_started_over_or_held_by_another_checkpoint_ends_the_passes() {
        // Started over between two passes: fewer frames than before.
        assert!(!another_pass(Some(pass(18_000, 18_000)), pass(700, 700)));
        // The writer's step holds it: SQLite reports busy, and -1 frames.
        let busy = Pass {
            busy: true,
            frames: -1,
            copied: -1,
        };
        assert!(!another_pass(Some(pass(18_000, 18_000)), busy));
        assert!(!another_pass(None, busy));
    }

    /// A reader still on an older version of the pages keeps frames from being copied:
    /// what is left counts, not what was added (the passes are bounded by MAX_PASSES).
    #[test]
    fn frames_a_reader_holds_back_count_as_left() {
        assert!(another_pass(Some(pass(18_000, 9_000)), pass(18_100, 9_000)));
    }
}
