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

#include <pthread.h>
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

/* Writes a snapshot's bytes through w; returns 0 or a negative errno. */
typedef int (*snapshot_fill_fn)(void *arg, struct fl_snapshot_writer *w);

/* Save group's state at index through fill(arg, w), as the file of (group,
 * index): written, fsynced and renamed into place. Fills meta's size and
 * checksum. Returns 0, a negative errno, or what fill() returned. */
int snapshot_save(int dir_fd, struct snapshot_meta *meta, snapshot_fill_fn fill, void *arg);

/* Remove the file of (group, index) (a save that was not made current). */
void snapshot_discard(int dir_fd, uint64_t group, uint64_t index);

/* The node's snapshot thread: it writes the views that fl_sm_ops.freeze
 * took, and then their manifests, so that a save never stalls a shard loop
 * on the state machine's bytes or an fsync. Jobs run one at a time, in
 * order. A manifest never goes back: the thread writes one only if the
 * group's current manifest (read under manifest_lock, which the shard also
 * holds to write the manifest of a snapshot it installs) is older. */
struct snapshot_job;
typedef void (*snapshot_job_done_fn)(struct snapshot_job *job);

struct snapshot_job {
	struct snapshot_job *next; /* The worker's queue, then the owner's. */
	int dir_fd;
	struct snapshot_meta meta; /* group, index, term, conf in; size, checksum out. */
	pthread_mutex_t *manifest_lock;
	struct fl_sm_ops sm;       /* save_view, release and ctx are used. */
	void *view;                /* From freeze; released by the worker. */
	int rv;                    /* Out: 0 (file and manifest durable), an error, -ECANCELED
				    * (stopping), or -ESTALE (a newer snapshot is current). */
	snapshot_job_done_fn done; /* Runs on the snapshot thread; owns job then. */
	void *owner;
	uint64_t started_ns, held_ns; /* The owner's: when freeze began, how long it took. */
};

struct snapshot_worker;

/* Start the thread. Returns 0 or a negative errno. */
int snapshot_worker_start(struct snapshot_worker **worker);

/* Queue job; its done() runs on the snapshot thread once the file is
 * durable (rv 0) or not made (rv < 0). Any thread. */
void snapshot_worker_submit(struct snapshot_worker *worker, struct snapshot_job *job);

/* Finish the job in progress, cancel the queued ones (done() with
 * -ECANCELED, views released), join the thread and free it. */
void snapshot_worker_stop(struct snapshot_worker *worker);

/* Make meta the group's current snapshot (atomically, durably), then delete
 * the group's files of lower indexes (files of higher ones may be a save or
 * a transfer in progress). Returns 0 or a negative errno. */
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
	uint64_t last_ms;    /* When a chunk last arrived (the shard's clock). */
	uint64_t started_ms; /* When the first chunk arrived. */
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
