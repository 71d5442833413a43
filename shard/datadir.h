/* A node's data directory: whose it is (the manifest) and who uses it now
 * (the lock).
 *
 * The manifest says which node of which cluster, with how many shards, the
 * directory was made for, and holds the directory's incarnation id: 64
 * random bits fixed when the manifest is first written, which the node sends
 * in its peer handshakes so that peers can tell this directory's process from
 * another claiming the same node id. The lock is an flock(2) on a lock file,
 * held from datadir_open() to datadir_close(); the holder's PID is written
 * into the file so that a refused process can name it. */
#ifndef SHARD_DATADIR_H
#define SHARD_DATADIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/log.h"

#define DATADIR_MANIFEST      "flotilla.manifest"
#define DATADIR_MANIFEST_TEMP "flotilla.manifest.tmp"
#define DATADIR_LOCK          "flotilla.lock"
#define DATADIR_MANIFEST_SIZE 64
#define DATADIR_VERSION       1

struct datadir_manifest {
	uint32_t version;
	uint32_t shards_count;
	uint64_t cluster_id;
	uint64_t node_id;
	uint64_t incarnation; /* Never 0. */
	uint64_t created_s;   /* Unix time the manifest was first written. */
};

/* What datadir_open() checks the directory against. */
struct datadir_expect {
	uint64_t cluster_id;
	uint64_t node_id;
	uint32_t shards_count;
	const struct logger *log; /* NULL: text on stderr. Borrowed until datadir_close(). */
};

struct datadir {
	int lock_fd;       /* -1 when not held. */
	bool lock_created; /* This open made the lock file. */
	struct logger log;
	struct datadir_manifest manifest;
};

/* Write m into buf (DATADIR_MANIFEST_SIZE bytes). */
void datadir_manifest_encode(const struct datadir_manifest *m, uint8_t *buf);
/* Returns 0, or ERR_DIR_CORRUPT for a bad magic, checksum, version or field. */
int datadir_manifest_decode(struct datadir_manifest *m, const uint8_t *buf, size_t size);

/* Read and verify dir's manifest. Returns 0, -ENOENT (none), ERR_DIR_CORRUPT,
 * or -errno. */
int datadir_manifest_read(const char *dir, struct datadir_manifest *m);
/* Replace dir's manifest atomically: write the temporary file, fsync it,
 * rename it over the manifest, fsync dir. A crash at any point leaves the old
 * manifest or the new one, never a mix. Returns 0 or -errno. */
int datadir_manifest_write(const char *dir, const struct datadir_manifest *m);

/* Lock dir (which must exist), then read and check its manifest, or write
 * one (empty directory; adoption of an older directory: see datadir.c).
 * Returns 0 with dd locked and dd->manifest filled; or ERR_DIR_IN_USE,
 * ERR_DIR_MISMATCH, ERR_DIR_FOREIGN, ERR_DIR_CORRUPT or -errno, with why
 * saying what and what the operator does next, and nothing held. */
int datadir_open(struct datadir *dd, const char *dir, const struct datadir_expect *expect,
		 char *why, size_t why_size);
/* Release the lock. */
void datadir_close(struct datadir *dd);

#ifdef FLOTILLA_TEST_HOOKS
/* Test builds: the next datadir_manifest_write() stops after writing and
 * syncing the temporary file, as a crash before the rename would, and
 * returns -EINTR. */
extern int datadir_test_stop_before_rename;
#endif

#endif /* SHARD_DATADIR_H */
