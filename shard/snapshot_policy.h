/* When a group snapshots on its own: the rule that keeps what snapshots
 * write a bounded multiple of what was applied, whatever the state's size.
 *
 * Let n be the entries and L the bytes of entries applied since the
 * group's last snapshot, and S the size of that snapshot's file (0 when the
 * group has none). A group is due when the floor AND the ratio hold:
 *
 *   floor:  n >= entries (when entries > 0), or L >= bytes (when bytes > 0);
 *           with both 0 it never holds (snapshots only when asked);
 *   ratio:  L >= S * ratio_percent / 100; always holds when ratio_percent
 *           is 0 (the floor alone: a snapshot every `entries` entries).
 *
 * Each snapshot then follows at least ratio_percent% of S in applied bytes,
 * so over a run that applies U bytes the files written total at most
 * U * 100 / ratio_percent plus the state's growth over the run (a
 * snapshot is S plus what the bytes since added): with 50, at most 2U plus
 * the final state. The floor lets a small state (S near 0) compact every
 * `entries` entries as before, and never makes snapshots more frequent
 * than the ratio. The log kept between snapshots (on disk, and in memory
 * in the engine) is at most the larger of the floor and ratio_percent% of
 * S, plus what is applied while a save is being written. The WAL may still
 * ask for a snapshot sooner (a group pinning its oldest segment), and
 * fl_group_snapshot() always takes one. */
#ifndef SHARD_SNAPSHOT_POLICY_H
#define SHARD_SNAPSHOT_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#define SNAPSHOT_POLICY_RATIO_PERCENT_MAX 1000 /* The log up to 10x the state. */

struct snapshot_policy {
	uint32_t entries;       /* Floor in entries applied; 0: none. */
	uint64_t bytes;         /* Floor in bytes applied; 0: none. */
	uint32_t ratio_percent; /* Of the last snapshot's size; 0: the floor alone. */
};

/* Whether a group that applied entries_count entries and applied_bytes
 * bytes since its last snapshot, of snapshot_size bytes, is due. */
bool snapshot_policy_is_due(const struct snapshot_policy *policy, uint64_t entries_count,
			    uint64_t applied_bytes, uint64_t snapshot_size);

#endif /* SHARD_SNAPSHOT_POLICY_H */
