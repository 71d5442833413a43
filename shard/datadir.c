/* The data directory's manifest and lock (see datadir.h).
 *
 * The happy path at start is: open and flock the lock file (LOCK_EX |
 * LOCK_NB) and write our PID into it; read the manifest, verify its
 * checksum, and compare its node id, cluster id and shard count with the
 * configuration. At the first start in an empty directory, write a new
 * manifest with a fresh incarnation id from getrandom(2).
 *
 * Failure modes, each refused with a message that names the file or both
 * values and what the operator does next:
 *  - the lock is held: another process (its PID is in the lock file), or
 *    another node of this process (flock locks belong to an open file, so a
 *    second open in the same process conflicts too);
 *  - the manifest names another node, cluster or shard count: the node
 *    would otherwise run on another node's log, or re-create its groups in
 *    other shards beside their old copies;
 *  - the manifest fails its checksum, is short, or has an unknown version;
 *  - no manifest, but files: a directory made by a Flotilla without
 *    manifests is adopted once, writing a manifest, if it holds only shard
 *    directories (shard-N and shard-N.snapshots, N below the shard count,
 *    shard-0..count-1 all present) and lost+found; anything else is a
 *    directory Flotilla did not make, and is refused rather than used.
 *
 * MANIFEST: 64 bytes, little-endian, in DATADIR_MANIFEST.
 *    0: u32 magic          DATADIR_MAGIC ("FLMF")
 *    4: u32 version        DATADIR_VERSION
 *    8: u64 cluster_id
 *   16: u64 node_id
 *   24: u32 shards_count
 *   28: u32 zero
 *   32: u64 incarnation    random, never 0; fixed when the manifest is made
 *   40: u64 created_s      Unix time of the first write
 *   48: u64 zero
 *   56: u64 checksum       xxh3-64 of bytes 0..55 */
#include "shard/datadir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "base/assert.h"
#include "base/err.h"
#include "base/le.h"
#include "base/log.h"
#include "shard/book.h"

#define DATADIR_MAGIC 0x464d4c46u /* "FLMF" little-endian. */

_Static_assert(DATADIR_MANIFEST_SIZE == 64, "the manifest is 64 bytes");

#ifdef FLOTILLA_TEST_HOOKS
int datadir_test_stop_before_rename;
#endif

void datadir_manifest_encode(const struct datadir_manifest *m, uint8_t *buf)
{
	ASSERT(m->incarnation != 0);
	ASSERT(m->shards_count != 0);
	memset(buf, 0, DATADIR_MANIFEST_SIZE);
	le_put32(buf, DATADIR_MAGIC);
	le_put32(buf + 4, m->version);
	le_put64(buf + 8, m->cluster_id);
	le_put64(buf + 16, m->node_id);
	le_put32(buf + 24, m->shards_count);
	le_put64(buf + 32, m->incarnation);
	le_put64(buf + 40, m->created_s);
	le_put64(buf + 56, XXH3_64bits(buf, 56));
}

int datadir_manifest_decode(struct datadir_manifest *m, const uint8_t *buf, size_t size)
{
	if (size != DATADIR_MANIFEST_SIZE || le_get32(buf) != DATADIR_MAGIC ||
	    le_get64(buf + 56) != XXH3_64bits(buf, 56))
		return ERR_DIR_CORRUPT;
	m->version = le_get32(buf + 4);
	m->cluster_id = le_get64(buf + 8);
	m->node_id = le_get64(buf + 16);
	m->shards_count = le_get32(buf + 24);
	m->incarnation = le_get64(buf + 32);
	m->created_s = le_get64(buf + 40);
	if (m->version != DATADIR_VERSION || m->shards_count == 0 || m->incarnation == 0 ||
	    m->node_id == 0 || le_get32(buf + 28) != 0 || le_get64(buf + 48) != 0)
		return ERR_DIR_CORRUPT;
	return 0;
}

static void datadir_path(char *path, size_t size, const char *dir, const char *name)
{
	snprintf(path, size, "%s/%s", dir, name);
}

int datadir_manifest_read(const char *dir, struct datadir_manifest *m)
{
	uint8_t buf[DATADIR_MANIFEST_SIZE + 1];
	char path[4200];
	ssize_t n;
	int fd, rv;

	datadir_path(path, sizeof(path), dir, DATADIR_MANIFEST);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* One byte more than a manifest: a longer file is not one. */
	n = pread(fd, buf, sizeof(buf), 0);
	rv = n < 0 ? -errno : datadir_manifest_decode(m, buf, (size_t)n);
	close(fd);
	return rv;
}

static int datadir_sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rv = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) != 0)
		rv = -errno;
	close(fd);
	return rv;
}

int datadir_manifest_write(const char *dir, const struct datadir_manifest *m)
{
	uint8_t buf[DATADIR_MANIFEST_SIZE];
	char temp[4200], path[4200];
	int fd, rv = 0;

	datadir_manifest_encode(m, buf);
	datadir_path(temp, sizeof(temp), dir, DATADIR_MANIFEST_TEMP);
	datadir_path(path, sizeof(path), dir, DATADIR_MANIFEST);
	fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	if (pwrite(fd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf))
		rv = errno ? -errno : -EIO;
	/* The bytes are durable before the name points at them: a crash after
	 * the rename must not leave an empty manifest. */
	if (rv == 0 && fsync(fd) != 0)
		rv = -errno;
	close(fd);
	if (rv != 0)
		goto err;
#ifdef FLOTILLA_TEST_HOOKS
	if (datadir_test_stop_before_rename) {
		datadir_test_stop_before_rename = 0;
		return -EINTR;
	}
#endif
	if (rename(temp, path) != 0) {
		rv = -errno;
		goto err;
	}
	/* The rename is durable once the directory is. */
	return datadir_sync_dir(dir);
err:
	unlink(temp);
	return rv;
}

/* Lock the directory, or say who holds it. */
static int datadir_lock(struct datadir *dd, const char *dir, char *why, size_t why_size)
{
	char path[4200], pid[32];
	int fd, n;

	datadir_path(path, sizeof(path), dir, DATADIR_LOCK);
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	dd->lock_created = fd >= 0;
	if (fd < 0 && errno == EEXIST)
		fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		int rv = -errno;

		snprintf(why, why_size, "cannot open the lock file %s: %s", path, strerror(errno));
		return rv;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		int rv = errno == EWOULDBLOCK ? ERR_DIR_IN_USE : -errno;
		ssize_t got = pread(fd, pid, sizeof(pid) - 1, 0);
		long holder = got > 0 ? (pid[got] = '\0', strtol(pid, NULL, 10)) : 0;

		if (rv != ERR_DIR_IN_USE)
			snprintf(why, why_size, "cannot lock %s: %s", path, strerror(-rv));
		else if (holder == (long)getpid())
			snprintf(why, why_size,
				 "data directory %s is in use by another node of this process "
				 "(pid %ld holds %s): give each node its own directory",
				 dir, holder, path);
		else if (holder > 0)
			snprintf(why, why_size,
				 "data directory %s is in use by process %ld (it holds %s): stop "
				 "that process first, or give this node another directory",
				 dir, holder, path);
		else
			snprintf(why, why_size,
				 "data directory %s is in use by another process (it holds %s, "
				 "no PID written yet): stop it first, or give this node another "
				 "directory",
				 dir, path);
		close(fd);
		return rv;
	}
	/* Ours until close: say so for the next one to come. */
	n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n)
		log_at(&dd->log, LOG_LEVEL_WARN, "cannot write the PID into %s: %s", path,
		       strerror(errno));
	dd->lock_fd = fd;
	return 0;
}

/* Whether name is a shard directory's: shard-N or shard-N.snapshots, with
 * *n set to N. */
static bool datadir_is_shard_name(const char *name, uint32_t *n, bool *snapshots)
{
	char *end;
	unsigned long v;

	if (strncmp(name, "shard-", 6) != 0 || name[6] < '0' || name[6] > '9')
		return false;
	errno = 0;
	v = strtoul(name + 6, &end, 10);
	if (errno != 0 || v > UINT32_MAX || (name[6] == '0' && end != name + 7))
		return false;
	*n = (uint32_t)v;
	*snapshots = strcmp(end, ".snapshots") == 0;
	return *end == '\0' || *snapshots;
}

/* No manifest: say whether dir is empty (*found 0), adoptable (*found the
 * shard directories seen), or neither (an error, why said). */
static int datadir_scan(const char *dir, const struct datadir_expect *expect, uint32_t *found,
			char *why, size_t why_size)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int rv = 0;

	*found = 0;
	if (d == NULL) {
		rv = -errno;
		snprintf(why, why_size, "cannot read data directory %s: %s", dir, strerror(errno));
		return rv;
	}
	while (rv == 0 && (e = readdir(d)) != NULL) {
		const char *name = e->d_name;
		struct stat st;
		char path[4200];
		bool snapshots;
		uint32_t n;

		if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
		    strcmp(name, DATADIR_LOCK) == 0 || strcmp(name, DATADIR_MANIFEST_TEMP) == 0 ||
		    strcmp(name, BOOK_FILE) == 0 || strcmp(name, BOOK_FILE_TEMP) == 0 ||
		    strcmp(name, "lost+found") == 0)
			continue;
		datadir_path(path, sizeof(path), dir, name);
		if (!datadir_is_shard_name(name, &n, &snapshots) || lstat(path, &st) != 0 ||
		    !S_ISDIR(st.st_mode)) {
			rv = ERR_DIR_FOREIGN;
			snprintf(why, why_size,
				 "data directory %s has no manifest and holds %s, which Flotilla "
				 "did not write: give the node an empty directory, or move %s out "
				 "if it is not needed",
				 dir, name, name);
		} else if (n >= expect->shards_count) {
			rv = ERR_DIR_MISMATCH;
			snprintf(why, why_size,
				 "data directory %s (no manifest yet) holds %s, but the node is "
				 "configured with %u shards: start it with the shard count the "
				 "directory was made with (a data directory's shard count cannot "
				 "change)",
				 dir, name, expect->shards_count);
		} else if (!snapshots) {
			(*found)++;
		}
	}
	closedir(d);
	if (rv == 0 && *found != 0 && *found != expect->shards_count) {
		rv = ERR_DIR_MISMATCH;
		snprintf(why, why_size,
			 "data directory %s (no manifest yet) holds %u shard directories, but the "
			 "node is configured with %u shards: start it with the shard count the "
			 "directory was made with (a data directory's shard count cannot change)",
			 dir, *found, expect->shards_count);
	}
	return rv;
}

/* Compare a manifest with the configuration. Returns 0 or ERR_DIR_MISMATCH. */
static int datadir_check(const char *dir, const struct datadir_manifest *m,
			 const struct datadir_expect *x, char *why, size_t why_size)
{
	unsigned long long mc = m->cluster_id, mn = m->node_id, xc = x->cluster_id, xn = x->node_id;

	if (m->cluster_id != x->cluster_id) {
		snprintf(why, why_size,
			 "data directory %s belongs to node %llu of cluster %llu, not to cluster "
			 "%llu: start a node of cluster %llu on it, or give this node (%llu of "
			 "cluster %llu) an empty directory",
			 dir, mn, mc, xc, mc, xn, xc);
		return ERR_DIR_MISMATCH;
	}
	if (m->node_id != x->node_id) {
		snprintf(why, why_size,
			 "data directory %s belongs to node %llu of cluster %llu, not node %llu: "
			 "start node %llu on it, or give node %llu an empty directory",
			 dir, mn, mc, xn, mn, xn);
		return ERR_DIR_MISMATCH;
	}
	if (m->shards_count != x->shards_count) {
		snprintf(why, why_size,
			 "data directory %s was made with %u shards, not %u: start node %llu with "
			 "%u shards (a data directory's shard count cannot change; to use %u, "
			 "replace the node: remove it from its groups, then add it back with an "
			 "empty directory)",
			 dir, m->shards_count, x->shards_count, xn, m->shards_count,
			 x->shards_count);
		return ERR_DIR_MISMATCH;
	}
	return 0;
}

/* No manifest: write one for an empty directory or one to adopt. */
static int datadir_create(struct datadir *dd, const char *dir, const struct datadir_expect *x,
			  char *why, size_t why_size)
{
	struct datadir_manifest *m = &dd->manifest;
	uint32_t found;
	int rv = datadir_scan(dir, x, &found, why, why_size);

	if (rv != 0)
		return rv;
	*m = (struct datadir_manifest){.version = DATADIR_VERSION,
				       .shards_count = x->shards_count,
				       .cluster_id = x->cluster_id,
				       .node_id = x->node_id,
				       .created_s = (uint64_t)time(NULL)};
	while (m->incarnation == 0)
		if (getrandom(&m->incarnation, sizeof(m->incarnation), 0) !=
		    (ssize_t)sizeof(m->incarnation)) {
			rv = -errno;
			snprintf(why, why_size, "getrandom: %s", strerror(errno));
			return rv;
		}
	rv = datadir_manifest_write(dir, m);
	if (rv != 0) {
		snprintf(why, why_size, "cannot write %s/%s: %s", dir, DATADIR_MANIFEST,
			 err_str(rv));
		return rv;
	}
	if (found != 0)
		log_at(&dd->log, LOG_LEVEL_INFO,
		       "data directory %s had no manifest: adopted its %u shards as node %llu "
		       "of cluster %llu (wrote %s)",
		       dir, found, (unsigned long long)x->node_id,
		       (unsigned long long)x->cluster_id, DATADIR_MANIFEST);
	return 0;
}

int datadir_open(struct datadir *dd, const char *dir, const struct datadir_expect *expect,
		 char *why, size_t why_size)
{
	int rv;

	dd->lock_fd = -1;
	dd->log = expect->log ? *expect->log : (struct logger){.node_id = expect->node_id};
	rv = datadir_lock(dd, dir, why, why_size);
	if (rv != 0)
		return rv;
	rv = datadir_manifest_read(dir, &dd->manifest);
	if (rv == -ENOENT)
		rv = datadir_create(dd, dir, expect, why, why_size);
	else if (rv == ERR_DIR_CORRUPT)
		snprintf(why, why_size,
			 "the manifest %s/%s fails verification (checksum, size or format "
			 "version): restore it from a copy of this directory, or give the node "
			 "an empty directory and add it back to its groups",
			 dir, DATADIR_MANIFEST);
	else if (rv != 0)
		snprintf(why, why_size, "cannot read %s/%s: %s", dir, DATADIR_MANIFEST,
			 strerror(-rv));
	else
		rv = datadir_check(dir, &dd->manifest, expect, why, why_size);
	if (rv != 0) {
		char path[4200];

		/* Leave a directory we refuse as it was: the lock file we made
		 * goes, while we still hold it. */
		datadir_path(path, sizeof(path), dir, DATADIR_LOCK);
		if (rv == ERR_DIR_FOREIGN && dd->lock_created)
			unlink(path);
		datadir_close(dd);
		return rv;
	}
	return 0;
}

void datadir_close(struct datadir *dd)
{
	if (dd->lock_fd < 0)
		return;
	/* Closing the only descriptor of the open file drops the flock. The
	 * PID stays in the file: only a locked file's PID means anything. */
	close(dd->lock_fd);
	dd->lock_fd = -1;
}
