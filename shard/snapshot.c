/* Snapshot files: see snapshot.h.
 *
 * FILES in a shard's snapshot directory, group and index in 16 hex digits:
 *   g<group>-<index>.snap       the state machine's bytes, as save() wrote them
 *   g<group>-<index>.snap.tmp   being saved
 *   g<group>-<index>.recv       being received from a leader
 *   g<group>.manifest           which snapshot is current (below)
 *
 * MANIFEST: little-endian.
 *    0: u32 magic        SNAPSHOT_MAGIC
 *    4: u32 version      1
 *    8: u64 group
 *   16: u64 index        last entry the snapshot covers
 *   24: u64 term         its term
 *   32: u64 size         bytes of the .snap file
 *   40: u64 checksum     xxh3-64 of the .snap file
 *   48: u32 conf_size    then the membership at index (raft_conf_encode)
 *   52: u32 zero
 *   56: conf bytes, padded to 8
 *   then u64 xxh3-64 of every byte before it.
 * Failure modes: a crash leaves at most a .tmp or .recv file (ignored and
 * cleaned up later) and never a manifest that names a file not yet durable. */
#include "shard/snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "base/le.h"

#define SNAPSHOT_MAGIC   0x504e5346u /* "FSNP" */
#define SNAPSHOT_VERSION 1
#define SNAPSHOT_BUF     (64u << 10)
#define MANIFEST_MAX     (64 + 8 + 16 * RAFT_MEMBERS_MAX + 8)

struct fl_snapshot_writer {
	int fd;
	int err;
	size_t len;
	uint64_t size;
	XXH3_state_t *hash;
	uint8_t buf[SNAPSHOT_BUF];
};

/* Reads go through a buffer: a state machine reads item by item, and one
 * syscall per few bytes made restoring large maps take seconds. */
struct fl_snapshot_reader {
	int fd;
	uint64_t remaining; /* Bytes of the file not yet handed out. */
	size_t at, len;     /* Buffered bytes: buf[at..len). */
	uint8_t buf[SNAPSHOT_BUF];
};

static void name_snap(char *buf, size_t size, uint64_t group, uint64_t index, const char *suffix)
{
	snprintf(buf, size, "g%016llx-%016llx%s", (unsigned long long)group,
		 (unsigned long long)index, suffix);
}

static void name_manifest(char *buf, size_t size, uint64_t group, const char *suffix)
{
	snprintf(buf, size, "g%016llx.manifest%s", (unsigned long long)group, suffix);
}

static int write_all(int fd, const void *buf, size_t size)
{
	const uint8_t *p = buf;

	while (size > 0) {
		ssize_t n = write(fd, p, size);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		size -= (size_t)n;
	}
	return 0;
}

static int read_all(int fd, void *buf, size_t size)
{
	uint8_t *p = buf;

	while (size > 0) {
		ssize_t n = read(fd, p, size);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EBADMSG; /* Shorter than it should be. */
		p += n;
		size -= (size_t)n;
	}
	return 0;
}

/* Rename from to to in dir and make both the file and the name durable. */
static int durable_rename(int dir_fd, int fd, const char *from, const char *to)
{
	if (fsync(fd) != 0)
		return -errno;
	if (renameat(dir_fd, from, dir_fd, to) != 0)
		return -errno;
	if (fsync(dir_fd) != 0)
		return -errno;
	return 0;
}

int snapshot_dir_open(const char *path)
{
	int fd;

	if (mkdir(path, 0755) != 0 && errno != EEXIST)
		return -errno;
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int fl_snapshot_write(struct fl_snapshot_writer *w, const void *buf, size_t size)
{
	const uint8_t *p = buf;

	if (w->err)
		return w->err;
	XXH3_64bits_update(w->hash, buf, size);
	w->size += size;
	while (size > 0) {
		size_t n = SNAPSHOT_BUF - w->len < size ? SNAPSHOT_BUF - w->len : size;

		memcpy(w->buf + w->len, p, n);
		w->len += n;
		p += n;
		size -= n;
		if (w->len == SNAPSHOT_BUF) {
			w->err = write_all(w->fd, w->buf, w->len);
			w->len = 0;
			if (w->err)
				return w->err;
		}
	}
	return 0;
}

long fl_snapshot_read(struct fl_snapshot_reader *r, void *buf, size_t size)
{
	if (size > r->remaining)
		size = (size_t)r->remaining;
	if (size == 0)
		return 0;
	if (r->at == r->len) {
		size_t want = r->remaining < SNAPSHOT_BUF ? (size_t)r->remaining : SNAPSHOT_BUF;
		ssize_t n;

		do
			n = read(r->fd, r->buf, want);
		while (n < 0 && errno == EINTR);
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EBADMSG; /* Shorter than its manifest says. */
		r->at = 0;
		r->len = (size_t)n;
	}
	if (size > r->len - r->at)
		size = r->len - r->at;
	memcpy(buf, r->buf + r->at, size);
	r->at += size;
	r->remaining -= size;
	return (long)size;
}

int snapshot_save(int dir_fd, struct snapshot_meta *meta, snapshot_fill_fn fill, void *arg)
{
	char tmp[80], name[80];
	struct fl_snapshot_writer *w = malloc(sizeof(*w));
	int rv;

	if (w == NULL)
		return -ENOMEM;
	name_snap(tmp, sizeof(tmp), meta->group, meta->index, ".snap.tmp");
	name_snap(name, sizeof(name), meta->group, meta->index, ".snap");
	*w = (struct fl_snapshot_writer){.hash = XXH3_createState()};
	w->fd = openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (w->fd < 0 || w->hash == NULL) {
		rv = w->fd < 0 ? -errno : -ENOMEM;
		goto out;
	}
	XXH3_64bits_reset(w->hash);
	rv = fill(arg, w);
	if (rv == 0)
		rv = w->err;
	if (rv == 0 && w->len > 0)
		rv = write_all(w->fd, w->buf, w->len);
	if (rv == 0)
		rv = durable_rename(dir_fd, w->fd, tmp, name);
	if (rv == 0) {
		meta->size = w->size;
		meta->checksum = XXH3_64bits_digest(w->hash);
	}
out:
	if (w->fd >= 0)
		close(w->fd);
	if (rv != 0)
		unlinkat(dir_fd, tmp, 0);
	XXH3_freeState(w->hash);
	free(w);
	return rv;
}

void snapshot_discard(int dir_fd, uint64_t group, uint64_t index)
{
	char name[80];

	name_snap(name, sizeof(name), group, index, ".snap");
	unlinkat(dir_fd, name, 0);
}

/* Remove group's files of indexes below keep_index (UINT64_MAX: all files,
 * and the manifest too when manifest is set). */
static void remove_files(int dir_fd, uint64_t group, uint64_t keep_index, bool manifest)
{
	char prefix[32];
	int fd = dup(dir_fd);
	DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	size_t prefix_len;

	if (dir == NULL) {
		if (fd >= 0)
			close(fd);
		return;
	}
	snprintf(prefix, sizeof(prefix), "g%016llx", (unsigned long long)group);
	prefix_len = strlen(prefix);
	rewinddir(dir);
	while ((de = readdir(dir)) != NULL) {
		unsigned long long index;

		if (strncmp(de->d_name, prefix, prefix_len) != 0)
			continue;
		if (strstr(de->d_name, ".manifest") != NULL) {
			if (manifest)
				unlinkat(dir_fd, de->d_name, 0);
			continue;
		}
		/* g<group>-<index>.<suffix>: keep what a save or a transfer
		 * beyond the current snapshot may still be writing. */
		if (sscanf(de->d_name + prefix_len, "-%16llx", &index) != 1 ||
		    (uint64_t)index < keep_index)
			unlinkat(dir_fd, de->d_name, 0);
	}
	closedir(dir);
}

int snapshot_manifest_write(int dir_fd, const struct snapshot_meta *meta)
{
	uint8_t buf[MANIFEST_MAX] = {0};
	uint32_t conf_size = raft_conf_encoded_size(&meta->conf);
	size_t size = 56 + ((conf_size + 7u) & ~7u);
	char tmp[80], name[80];
	int fd, rv;

	le_put32(buf, SNAPSHOT_MAGIC);
	le_put32(buf + 4, SNAPSHOT_VERSION);
	le_put64(buf + 8, meta->group);
	le_put64(buf + 16, meta->index);
	le_put64(buf + 24, meta->term);
	le_put64(buf + 32, meta->size);
	le_put64(buf + 40, meta->checksum);
	le_put32(buf + 48, conf_size);
	raft_conf_encode(&meta->conf, buf + 56);
	le_put64(buf + size, XXH3_64bits(buf, size));
	size += 8;
	name_manifest(tmp, sizeof(tmp), meta->group, ".tmp");
	name_manifest(name, sizeof(name), meta->group, "");
	fd = openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	rv = write_all(fd, buf, size);
	if (rv == 0)
		rv = durable_rename(dir_fd, fd, tmp, name);
	close(fd);
	if (rv != 0) {
		unlinkat(dir_fd, tmp, 0);
		return rv;
	}
	remove_files(dir_fd, meta->group, meta->index, false);
	return 0;
}

int snapshot_manifest_read(int dir_fd, uint64_t group, struct snapshot_meta *meta)
{
	uint8_t buf[MANIFEST_MAX + 1];
	char name[80];
	ssize_t n;
	uint32_t conf_size;
	size_t size;
	int fd;

	name_manifest(name, sizeof(name), group, "");
	fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ENOENT : -errno;
	n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n < 64 || le_get32(buf) != SNAPSHOT_MAGIC || le_get32(buf + 4) != SNAPSHOT_VERSION)
		return -EBADMSG;
	conf_size = le_get32(buf + 48);
	size = 56 + ((conf_size + 7u) & ~7u);
	if (conf_size > MANIFEST_MAX || (size_t)n != size + 8 ||
	    le_get64(buf + size) != XXH3_64bits(buf, size))
		return -EBADMSG;
	meta->group = le_get64(buf + 8);
	meta->index = le_get64(buf + 16);
	meta->term = le_get64(buf + 24);
	meta->size = le_get64(buf + 32);
	meta->checksum = le_get64(buf + 40);
	if (meta->group != group || raft_conf_decode(&meta->conf, buf + 56, conf_size) != 0)
		return -EBADMSG;
	return 0;
}

int snapshot_open(int dir_fd, uint64_t group, uint64_t index)
{
	char name[80];
	int fd;

	name_snap(name, sizeof(name), group, index, ".snap");
	fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* Checksum the whole file before anything is restored from it: a restore
 * never starts from bytes that turn out bad halfway. */
static int snapshot_verify(int fd, const struct snapshot_meta *meta)
{
	uint8_t *buf = malloc(SNAPSHOT_BUF);
	XXH3_state_t *hash = XXH3_createState();
	uint64_t left = meta->size;
	struct stat st;
	int rv = 0;

	if (buf == NULL || hash == NULL) {
		rv = -ENOMEM;
		goto out;
	}
	if (fstat(fd, &st) != 0 || (uint64_t)st.st_size != meta->size) {
		rv = -EBADMSG;
		goto out;
	}
	XXH3_64bits_reset(hash);
	while (left > 0 && rv == 0) {
		size_t n = left < SNAPSHOT_BUF ? (size_t)left : SNAPSHOT_BUF;

		rv = read_all(fd, buf, n);
		XXH3_64bits_update(hash, buf, n);
		left -= n;
	}
	if (rv == 0 && XXH3_64bits_digest(hash) != meta->checksum)
		rv = -EBADMSG;
	if (rv == 0 && lseek(fd, 0, SEEK_SET) != 0)
		rv = -errno;
out:
	XXH3_freeState(hash);
	free(buf);
	return rv;
}

int snapshot_restore(int dir_fd, const struct snapshot_meta *meta,
		     int (*restore)(void *ctx, uint64_t group, struct fl_snapshot_reader *r),
		     void *ctx)
{
	struct fl_snapshot_reader *r = malloc(sizeof(*r));
	int rv;

	if (r == NULL)
		return -ENOMEM;
	r->remaining = meta->size;
	r->at = r->len = 0;
	r->fd = snapshot_open(dir_fd, meta->group, meta->index);
	if (r->fd < 0) {
		rv = r->fd;
		goto out;
	}
	rv = snapshot_verify(r->fd, meta);
	if (rv == 0)
		rv = restore(ctx, meta->group, r);
	close(r->fd);
out:
	free(r);
	return rv;
}

void snapshot_remove_group(int dir_fd, uint64_t group)
{
	remove_files(dir_fd, group, UINT64_MAX, true);
}

int snapshot_recv_begin(int dir_fd, struct snapshot_recv *recv)
{
	char name[80];

	name_snap(name, sizeof(name), recv->group, recv->index, ".recv");
	recv->received = 0;
	recv->hash = XXH3_createState();
	if (recv->hash == NULL)
		return -ENOMEM;
	XXH3_64bits_reset(recv->hash);
	recv->fd = openat(dir_fd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (recv->fd < 0) {
		XXH3_freeState(recv->hash);
		recv->hash = NULL;
		return -errno;
	}
	return 0;
}

int snapshot_recv_write(struct snapshot_recv *recv, const void *buf, size_t size)
{
	int rv;

	if (recv->received + size > recv->size)
		return -EBADMSG;
	rv = write_all(recv->fd, buf, size);
	if (rv != 0)
		return rv;
	XXH3_64bits_update(recv->hash, buf, size);
	recv->received += size;
	return 0;
}

int snapshot_recv_finish(int dir_fd, struct snapshot_recv *recv)
{
	char from[80], to[80];
	int rv = 0;

	if (recv->received != recv->size)
		return -EAGAIN;
	if (XXH3_64bits_digest(recv->hash) != recv->checksum)
		rv = -EBADMSG;
	name_snap(from, sizeof(from), recv->group, recv->index, ".recv");
	name_snap(to, sizeof(to), recv->group, recv->index, ".snap");
	if (rv == 0)
		rv = durable_rename(dir_fd, recv->fd, from, to);
	if (rv != 0) {
		snapshot_recv_abort(dir_fd, recv);
		return rv;
	}
	close(recv->fd);
	recv->fd = -1;
	XXH3_freeState(recv->hash);
	recv->hash = NULL;
	return 0;
}

void snapshot_recv_abort(int dir_fd, struct snapshot_recv *recv)
{
	char name[80];

	if (recv->fd >= 0)
		close(recv->fd);
	recv->fd = -1;
	XXH3_freeState(recv->hash);
	recv->hash = NULL;
	name_snap(name, sizeof(name), recv->group, recv->index, ".recv");
	unlinkat(dir_fd, name, 0);
}

/* ------------------------------------------------------- snapshot thread */

struct snapshot_worker {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct snapshot_job *head, *tail; /* Under lock. */
	bool stopping;                    /* Under lock. */
};

static int job_fill(void *arg, struct fl_snapshot_writer *w)
{
	struct snapshot_job *job = arg;

	return job->sm.save_view(job->sm.ctx, job->meta.group, job->view, w);
}

/* Make the job's file current unless a newer one already is. */
static int job_manifest(struct snapshot_job *job)
{
	struct snapshot_meta current;
	int rv;

	pthread_mutex_lock(job->manifest_lock);
	rv = snapshot_manifest_read(job->dir_fd, job->meta.group, &current);
	if (rv == 0 && current.index >= job->meta.index)
		rv = -ESTALE;
	else
		rv = snapshot_manifest_write(job->dir_fd, &job->meta);
	pthread_mutex_unlock(job->manifest_lock);
	if (rv != 0)
		snapshot_discard(job->dir_fd, job->meta.group, job->meta.index);
	return rv;
}

/* Write one view, release it, make it current, hand the job back. */
static void job_run(struct snapshot_job *job, bool cancel)
{
	job->rv = cancel ? -ECANCELED : snapshot_save(job->dir_fd, &job->meta, job_fill, job);
	job->sm.release(job->sm.ctx, job->meta.group, job->view);
	job->view = NULL;
	if (job->rv == 0)
		job->rv = job_manifest(job);
	job->done(job);
}

static void *worker_main(void *arg)
{
	struct snapshot_worker *wk = arg;

	pthread_mutex_lock(&wk->lock);
	for (;;) {
		struct snapshot_job *job = wk->head;

		if (job == NULL && wk->stopping)
			break;
		if (job == NULL) {
			pthread_cond_wait(&wk->cond, &wk->lock);
			continue;
		}
		wk->head = job->next;
		if (wk->head == NULL)
			wk->tail = NULL;
		job->next = NULL;
		{
			bool cancel = wk->stopping;

			/* The shard threads queue jobs meanwhile. */
			pthread_mutex_unlock(&wk->lock);
			job_run(job, cancel);
			pthread_mutex_lock(&wk->lock);
		}
	}
	pthread_mutex_unlock(&wk->lock);
	return NULL;
}

int snapshot_worker_start(struct snapshot_worker **out)
{
	struct snapshot_worker *wk = calloc(1, sizeof(*wk));
	int rv;

	if (wk == NULL)
		return -ENOMEM;
	pthread_mutex_init(&wk->lock, NULL);
	pthread_cond_init(&wk->cond, NULL);
	rv = -pthread_create(&wk->thread, NULL, worker_main, wk);
	if (rv != 0) {
		pthread_cond_destroy(&wk->cond);
		pthread_mutex_destroy(&wk->lock);
		free(wk);
		return rv;
	}
	*out = wk;
	return 0;
}

void snapshot_worker_submit(struct snapshot_worker *wk, struct snapshot_job *job)
{
	bool cancel;

	job->next = NULL;
	pthread_mutex_lock(&wk->lock);
	cancel = wk->stopping;
	if (!cancel) {
		if (wk->tail)
			wk->tail->next = job;
		else
			wk->head = job;
		wk->tail = job;
		pthread_cond_signal(&wk->cond);
	}
	pthread_mutex_unlock(&wk->lock);
	if (cancel)
		job_run(job, true);
}

void snapshot_worker_stop(struct snapshot_worker *wk)
{
	if (wk == NULL)
		return;
	pthread_mutex_lock(&wk->lock);
	wk->stopping = true;
	pthread_cond_signal(&wk->cond);
	pthread_mutex_unlock(&wk->lock);
	pthread_join(wk->thread, NULL);
	pthread_cond_destroy(&wk->cond);
	pthread_mutex_destroy(&wk->lock);
	free(wk);
}
