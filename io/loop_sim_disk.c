/* The simulated loop backend, its disks: see loop_sim.h for what they model.
 *
 * Files stay real files. A write changes the file at once (the page cache)
 * and keeps the bytes it replaced, its undo image, until an fdatasync of
 * that file completes; a crash rolls back, newest first, each write no sync
 * covered (lost, kept or torn at a sector boundary). Operations of one
 * node's disk complete in order, after a simulated latency. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/array.h"
#include "io/loop_sim_internal.h"

static void loop_sim_disk_file_free(struct loop_sim_file *f)
{
	for (uint32_t i = 0; i < f->undo_count; i++)
		free(f->undo[i].old);
	free(f->undo);
	if (f->fd >= 0)
		close(f->fd);
	free(f);
}

void loop_sim_disk_free(struct loop_sim *sim)
{
	for (uint32_t i = 0; i < sim->files_count; i++)
		loop_sim_disk_file_free(sim->files[i]);
	free(sim->files);
}

/* The world's record of the file behind fd, made on its first operation.
 * Returns 0, -EBADF or -ENOMEM. */
static int loop_sim_disk_file_get(struct loop_sim_loop *l, int fd, struct loop_sim_file **out)
{
	struct loop_sim *sim = l->sim;
	struct stat st, mine;
	struct loop_sim_file *f, **files;
	char path[64];

	if (fstat(fd, &st) != 0)
		return -EBADF;
	for (uint32_t i = 0; i < sim->files_count; i++) {
		f = sim->files[i];
		if (f->dev != st.st_dev || f->ino != st.st_ino)
			continue;
		/* An inode number is reused once its file is gone: a record
		 * whose file has no name left is stale. */
		if (fstat(f->fd, &mine) == 0 && mine.st_nlink > 0) {
			*out = f;
			return 0;
		}
		loop_sim_disk_file_free(f);
		sim->files[i] = sim->files[--sim->files_count];
		break;
	}
	files = array_grow(sim->files, &sim->files_cap, sim->files_count + 1, sizeof(*sim->files),
			   LOOP_SIM_ARRAY_CAP_FIRST);
	if (files == NULL)
		return -ENOMEM;
	sim->files = files;
	f = calloc(1, sizeof(*f));
	if (f == NULL)
		return -ENOMEM;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	f->fd = open(path, O_RDWR | O_CLOEXEC);
	if (f->fd < 0)
		f->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	f->id = ++sim->file_ids;
	f->node = l->node;
	f->dev = st.st_dev;
	f->ino = st.st_ino;
	sim->files[sim->files_count++] = f;
	*out = f;
	return 0;
}

static struct loop_sim_file *loop_sim_disk_file_by_id(struct loop_sim *sim, uint64_t id)
{
	for (uint32_t i = 0; i < sim->files_count; i++)
		if (sim->files[i]->id == id)
			return sim->files[i];
	return NULL;
}

/* Apply a write to the page cache, keeping the old bytes until a sync.
 * Returns the bytes written, -ENOMEM (the file unchanged) or -errno. */
static int loop_sim_disk_write(struct loop_sim_file *f, const void *buf, uint32_t size,
			       uint64_t offset)
{
	struct loop_sim_undo u = {.offset = offset, .size = size};
	struct loop_sim_undo *undo;
	ssize_t n;

	undo = array_grow(f->undo, &f->undo_cap, f->undo_count + 1, sizeof(*f->undo),
			  LOOP_SIM_ARRAY_CAP_FIRST);
	if (undo == NULL)
		return -ENOMEM;
	f->undo = undo;
	u.old = malloc(size ? size : 1);
	if (u.old == NULL)
		return -ENOMEM;
	n = pread(f->fd, u.old, size, (off_t)offset);
	u.old_size = n > 0 ? (uint32_t)n : 0;
	n = pwrite(f->fd, buf, size, (off_t)offset);
	if (n < 0) {
		free(u.old);
		return -errno;
	}
	u.seq = ++f->seq_next;
	f->undo[f->undo_count++] = u;
	return (int)n;
}

void loop_sim_disk_synced(struct loop_sim *sim, uint64_t id, uint64_t seq)
{
	struct loop_sim_file *f = loop_sim_disk_file_by_id(sim, id);
	uint32_t kept = 0;

	if (f == NULL)
		return;
	for (uint32_t i = 0; i < f->undo_count; i++) {
		if (f->undo[i].seq <= seq)
			free(f->undo[i].old);
		else
			f->undo[kept++] = f->undo[i];
	}
	f->undo_count = kept;
}

/* Put back the bytes of [from, size) of a write: lost from there on. */
static void loop_sim_disk_undo_from(struct loop_sim_file *f, const struct loop_sim_undo *u,
				    uint32_t from)
{
	static const uint8_t zeros[LOOP_SIM_SECTOR_SIZE];

	if (from < u->old_size)
		(void)!pwrite(f->fd, u->old + from, u->old_size - from, (off_t)(u->offset + from));
	for (uint64_t off = from > u->old_size ? from : u->old_size; off < u->size;) {
		uint64_t n = u->size - off < sizeof(zeros) ? u->size - off : sizeof(zeros);

		(void)!pwrite(f->fd, zeros, n, (off_t)(u->offset + off));
		off += n;
	}
}

/* A crash: each write no sync covered is lost, kept, or torn (kept up to a
 * sector boundary), newest first so that older bytes come back last. */
static void loop_sim_disk_file_crash(struct loop_sim *sim, struct loop_sim_file *f)
{
	for (uint32_t i = f->undo_count; i-- > 0;) {
		const struct loop_sim_undo *u = &f->undo[i];
		uint64_t r = loop_sim_rand(sim) % 3;

		if (r == 0) {
			loop_sim_disk_undo_from(f, u, 0);
			sim->stats.writes_lost++;
		} else if (r == 1) {
			/* Sectors are aligned on the file, not on the write. */
			uint64_t first =
			    (u->offset / LOOP_SIM_SECTOR_SIZE + 1) * LOOP_SIM_SECTOR_SIZE;
			uint64_t end = u->offset + u->size;
			uint64_t sectors =
			    end > first ? (end - first) / LOOP_SIM_SECTOR_SIZE + 1 : 1;
			uint64_t cut =
			    first + (loop_sim_rand(sim) % sectors) * LOOP_SIM_SECTOR_SIZE;

			if (cut > end)
				cut = end;
			loop_sim_disk_undo_from(f, u, (uint32_t)(cut - u->offset));
			sim->stats.writes_torn++;
		}
		loop_sim_say(sim, "node %" PRIu64 " crash: write of %u at %" PRIu64 " %s", f->node,
			     u->size, u->offset,
			     r == 0   ? "lost"
			     : r == 1 ? "torn"
				      : "kept");
	}
}

void loop_sim_disk_crash(struct loop_sim *sim, uint64_t node)
{
	for (uint32_t i = 0; i < sim->files_count;) {
		struct loop_sim_file *f = sim->files[i];

		if (f->node != node) {
			i++;
			continue;
		}
		loop_sim_disk_file_crash(sim, f);
		loop_sim_disk_file_free(f);
		sim->files[i] = sim->files[--sim->files_count];
	}
}

uint32_t loop_sim_unsynced(const struct loop_sim *sim, uint64_t node)
{
	uint32_t count = 0;

	for (uint32_t i = 0; i < sim->files_count; i++)
		if (sim->files[i]->node == node)
			count += sim->files[i]->undo_count;
	return count;
}

uint64_t loop_sim_disk_done(struct loop_sim_loop *l)
{
	struct loop_sim *sim = l->sim;
	const struct loop_sim_faults *fl = &sim->faults;
	uint64_t start = l->disk_busy_ns > sim->now_ns ? l->disk_busy_ns : sim->now_ns;
	uint64_t ns = 1000 * loop_sim_between(sim, fl->disk_us_min, fl->disk_us_max);

	if (loop_sim_chance(sim, fl->disk_stall_ppm)) {
		ns += 1000000 * loop_sim_between(sim, 1, fl->disk_stall_ms_max);
		sim->stats.stalls++;
	}
	l->disk_busy_ns = start + ns; /* One queue per node's disk: in order. */
	return l->disk_busy_ns;
}

int loop_sim_disk_op(struct loop_sim_loop *l, enum loop_op_kind kind, int fd, void *buf,
		     uint32_t size, uint64_t offset, struct loop_sim_file **synced)
{
	struct loop_sim *sim = l->sim;
	const struct loop_sim_faults *fl = &sim->faults;
	struct loop_sim_file *f;
	ssize_t n;
	int rv;

	*synced = NULL;
	rv = loop_sim_disk_file_get(l, fd, &f);
	if (rv != 0)
		return rv;
	if (f->failed)
		return -EIO;
	switch (kind) {
	case LOOP_OP_WRITE:
		sim->stats.writes++;
		if (loop_sim_chance(sim, fl->write_eio_ppm)) {
			f->failed = true;
			sim->stats.write_eio++;
			loop_sim_say(sim, "node %" PRIu64 ": write EIO", l->node);
			return -EIO;
		}
		if (loop_sim_chance(sim, fl->enospc_ppm)) {
			sim->stats.enospc++;
			loop_sim_say(sim, "node %" PRIu64 ": write ENOSPC", l->node);
			return -ENOSPC;
		}
		return loop_sim_disk_write(f, buf, size, offset);
	case LOOP_OP_READ:
		n = pread(f->fd, buf, size, (off_t)offset);
		return n < 0 ? -errno : (int)n;
	case LOOP_OP_FSYNC:
		sim->stats.fsyncs++;
		if (loop_sim_chance(sim, fl->fsync_eio_ppm)) {
			f->failed = true;
			sim->stats.fsync_eio++;
			loop_sim_say(sim, "node %" PRIu64 ": fdatasync EIO", l->node);
			return -EIO;
		}
		*synced = f; /* The caller notes what it covers. */
		return 0;
	default:
		return -EINVAL;
	}
}

int loop_sim_allocate(struct loop *loop, int fd, uint64_t size)
{
	struct loop_sim_loop *l = loop->sim_loop;
	struct loop_sim *sim = l->sim;
	int rv;

	if (l->crashed)
		return -EIO;
	if (loop_sim_chance(sim, sim->faults.enospc_ppm)) {
		sim->stats.enospc++;
		loop_sim_say(sim, "node %" PRIu64 ": allocate ENOSPC", l->node);
		return -ENOSPC;
	}
	if (fallocate(fd, 0, 0, (off_t)size) == 0)
		return 0;
	if (errno != EOPNOTSUPP)
		return -errno;
	rv = posix_fallocate(fd, 0, (off_t)size);
	return -rv;
}
