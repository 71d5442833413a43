/* Snapshot files of a shard: what the state machine saved for a group at an
 * index, the manifest that says which file is current, and the files being
 * received from a leader.
 *
 * All of it is plain files in one directory per shard, written the safe way:
 * to a temporary name, fsynced, renamed, directory fsynced. A snapshot file
 * is current only once the manifest names it; a manifest is written only
 * after its file is durable. */
#ifndef SHARD_SNAPSHOT_H
#define SHARD_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/raft.h"
#include "flotilla.h"

struct snapshot_meta {
	uint64_t group;
	uint64_t index;
	uint64_t term;
	uint64_t size;     /* Bytes of the snapshot file. */
	uint64_t checksum; /* XXH3-64 of the file. */
	struct raft_conf conf;
};

/* Create (if missing) and open the snapshot directory. Returns a directory
 * fd or a negative errno. */
int snapshot_dir_open(const char *path);

/* Save group's state at index through save(), as the file of (group,
 * index): written, fsynced and renamed into place. Fills meta's size and
 * checksum. Returns 0, a negative errno, or what save() returned. */
int snapshot_save(int dir_fd, struct snapshot_meta *meta,
		  int (*save)(void *ctx, uint64_t group, struct fl_snapshot_writer *w), void *ctx);

/* Make meta the group's current snapshot (atomically, durably), then delete
 * the group's older snapshot files. Returns 0 or a negative errno. */
int snapshot_manifest_write(int dir_fd, const struct snapshot_meta *meta);

/* The group's current snapshot. Returns 0, -ENOENT (none) or -EBADMSG
 * (a manifest that fails its checksum: refuse to guess). */
int snapshot_manifest_read(int dir_fd, uint64_t group, struct snapshot_meta *meta);

/* Verify the file of meta (size and checksum) and hand it to restore().
 * Returns 0, -EBADMSG (the file does not match), or an error. */
int snapshot_restore(int dir_fd, const struct snapshot_meta *meta,
		     int (*restore)(void *ctx, uint64_t group, struct fl_snapshot_reader *r),
		     void *ctx);

/* Open the file of (group, index) for sending. Returns an fd or -errno. */
int snapshot_open(int dir_fd, uint64_t group, uint64_t index);

/* Remove every file of group (the group is removed from this node). */
void snapshot_remove_group(int dir_fd, uint64_t group);

/* A file being received: chunks arrive in order; finish() checks size and
 * checksum, fsyncs and renames it into place. */
struct snapshot_recv {
	uint64_t group, index, term;
	uint64_t size, checksum;
	uint64_t received;
	uint64_t peer;
	uint64_t last_ms; /* When a chunk last arrived (the shard's clock). */
	int fd;
	void *hash; /* XXH3 state. */
};

int snapshot_recv_begin(int dir_fd, struct snapshot_recv *recv);
int snapshot_recv_write(struct snapshot_recv *recv, const void *buf, size_t size);
/* Returns 0 once the file is complete, verified and in place; -EBADMSG if it
 * is complete but wrong; -EAGAIN if bytes are missing. Closes the file. */
int snapshot_recv_finish(int dir_fd, struct snapshot_recv *recv);
void snapshot_recv_abort(int dir_fd, struct snapshot_recv *recv);

#endif /* SHARD_SNAPSHOT_H */
