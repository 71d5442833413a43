/* The WAL against the disk it runs on.
 *
 *   wal/ceiling/batch_kib:<n>      the device ceiling: a plain loop of pwrite of
 *                                  n KiB + fdatasync, sequential, in a
 *                                  preallocated file (no io_uring, no WAL).
 *   wal/append/<size>/groups:<g>   the WAL with g groups (1, 100, 10,000) each
 *                                  appending entries of <size> (128 B, 4 KiB):
 *                                  every turn appends to every group, flushes
 *                                  and reaps without waiting, so group commit
 *                                  forms batches as large as an fdatasync
 *                                  lets them grow. Measured in steady state:
 *                                  after a warm-up that leaves recycled
 *                                  segments to write into. Reports entries/s, MB/s of
 *                                  payload and of bytes written, fsyncs/s,
 *                                  fsyncs per entry, the mean batch, and the
 *                                  bytes written per second as a fraction of
 *                                  the ceiling measured right after on the same
 *                                  disk with the same mean batch size.
 *   wal/ceiling_direct/..., wal/append_direct/...
 *                                  the same with O_DIRECT writes (config
 *                                  direct_io), against an O_DIRECT ceiling.
 *   wal/fsync_latency/kib:<n>      the physical floor of a commit: the latency
 *                                  of one pwrite of n KiB + fdatasync, one at a
 *                                  time, over a preallocated, written file;
 *                                  p50/p99/max in microseconds over 2 s (at
 *                                  most 2,000 samples).
 *   wal/recovery                   wal_init() of a WAL of 1 GiB (4 KiB entries of
 *                                  1,000 groups), its page cache dropped first.
 *
 * The disk: $FLOTILLA_BENCH_DIR, else $TMPDIR, else /tmp (use a real disk,
 * not a tmpfs). $FLOTILLA_BENCH_RECOVERY_MB changes the recovery size and
 * $FLOTILLA_BENCH_WARMUP_MB the warm-up (default: the spare segments). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
#include "bench/harness.h"
#include "io/wal.h"

#define WAL_BENCH_CEILING_FILE  (64u << 20)
#define WAL_BENCH_COMPACT_EVERY (256ull << 20) /* Bytes written between compactions. */

/* One WAL case: entry size and whether batches are written with O_DIRECT. */
struct wal_bench_case {
	uint32_t entry_size;
	bool direct;
};

struct wal_bench {
	struct loop loop;
	struct wal wal;
	char dir[512];
	uint8_t *payload;
	uint64_t *last; /* Last index per group. */
	uint64_t groups;
	uint64_t compacted_at;
};

static uint64_t wal_bench_now_ns(void)
{
	return loop_now_ns(NULL);
}

static const char *wal_bench_base(void)
{
	const char *base = getenv("FLOTILLA_BENCH_DIR");

	if (base == NULL)
		base = getenv("TMPDIR");
	return base != NULL ? base : "/tmp";
}

static void wal_bench_rmdir(const char *dir)
{
	char path[600], name[SEGMENT_NAME_SIZE];

	/* Only our own files: segments, the WAL's chain file (io/wal_chain.c;
	 * left behind, it kept the directory from going) and the ceiling file. */
	for (uint64_t seq = 1; seq < 100000; seq++) {
		segment_name(name, seq);
		snprintf(path, sizeof(path), "%s/%s", dir, name);
		unlink(path);
	}
	snprintf(path, sizeof(path), "%s/chain", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/ceiling", dir);
	unlink(path);
	rmdir(dir);
}

static int wal_bench_mkdir(struct bench_state *s, char *out, const char *name)
{
	snprintf(out, 512, "%s/flotilla-bench-%s.XXXXXX", wal_bench_base(), name);
	if (mkdtemp(out) == NULL) {
		bench_skip_with_error(s, "cannot make a directory for the WAL benchmark");
		return -errno;
	}
	return 0;
}

/* The device ceiling: pwrite + fdatasync of batch bytes, sequentially over
 * a preallocated, already written file, for total bytes or seconds_max.
 * Returns bytes per second, or 0 on error. */
/* Create dir/ceiling, WAL_BENCH_CEILING_FILE bytes written once and synced,
 * so that later writes find allocated, written blocks as the WAL's recycled
 * segments do; *buf gets a 4096-aligned buffer of that size (the caller
 * frees it). Returns the open file, or -1 with nothing left open. */
static int wal_bench_ceiling_file(const char *dir, char *path, size_t path_size, uint8_t **buf)
{
	int fd;

	snprintf(path, path_size, "%s/ceiling", dir);
	*buf = NULL;
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	if (posix_memalign((void **)buf, 4096, WAL_BENCH_CEILING_FILE) != 0) {
		*buf = NULL;
		goto fail;
	}
	memset(*buf, 0x5a, WAL_BENCH_CEILING_FILE);
	if (pwrite(fd, *buf, WAL_BENCH_CEILING_FILE, 0) != WAL_BENCH_CEILING_FILE || fsync(fd) != 0)
		goto fail;
	return fd;
fail:
	free(*buf);
	*buf = NULL;
	close(fd);
	unlink(path);
	return -1;
}

static double wal_bench_ceiling_run(const char *dir, uint64_t batch, uint64_t total,
				    double seconds_max, bool direct, uint64_t *fsyncs)
{
	char path[600];
	uint8_t *buf;
	uint64_t done = 0, start, span;
	double elapsed = 0;
	int fd, dfd = -1;

	fd = wal_bench_ceiling_file(dir, path, sizeof(path), &buf);
	if (fd < 0)
		return 0;
	batch = (batch + 4095) & ~4095ull;
	span = WAL_BENCH_CEILING_FILE / batch * batch;
	if (direct) {
		dfd = open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
		if (dfd < 0)
			goto out;
		close(fd);
		fd = dfd;
	}
	*fsyncs = 0;
	start = wal_bench_now_ns();
	while (done < total && elapsed < seconds_max) {
		if (pwrite(fd, buf, batch, (off_t)(done % span)) != (ssize_t)batch ||
		    fdatasync(fd) != 0)
			goto out;
		done += batch;
		(*fsyncs)++;
		elapsed = (double)(wal_bench_now_ns() - start) / 1e9;
	}
out:
	free(buf);
	close(fd);
	unlink(path);
	return elapsed > 0 ? (double)done / elapsed : 0;
}

static void bench_wal_ceiling(struct bench_state *s, void *arg)
{
	uint64_t batch = (uint64_t)bench_range(s, 0) << 10, fsyncs = 0, bytes = 0;
	bool direct = arg != NULL;
	char dir[512];
	double rate = 0;

	if (wal_bench_mkdir(s, dir, "ceiling") != 0)
		return;
	while (bench_keep_running(s)) {
		uint64_t n = 0;

		rate = wal_bench_ceiling_run(dir, batch, 64ull << 20, 0.5, direct, &n);
		if (rate == 0) {
			bench_skip_with_error(s, "ceiling write or fdatasync failed");
			break;
		}
		fsyncs += n;
		bytes += n * batch;
	}
	(void)bytes;
	(void)fsyncs;
	bench_counter(s, "MB/s", rate / 1e6, 0); /* Timed around the loop only. */
	bench_counter(s, "fsyncs/s", rate / (double)batch, 0);
	wal_bench_rmdir(dir);
}

#define WAL_BENCH_FSYNC_SAMPLES 2000

static void bench_wal_fsync_latency(struct bench_state *s, void *arg)
{
	uint64_t size = (uint64_t)bench_range(s, 0) << 10, span, *samples, start;
	uint32_t count = 0;
	uint8_t *buf = NULL;
	char dir[512], path[600];
	int fd = -1;

	(void)arg;
	if (wal_bench_mkdir(s, dir, "fsync") != 0)
		return;
	samples = calloc(WAL_BENCH_FSYNC_SAMPLES, sizeof(*samples));
	if (samples != NULL)
		fd = wal_bench_ceiling_file(dir, path, sizeof(path), &buf);
	if (fd < 0) {
		bench_skip_with_error(s, "cannot set up the fdatasync probe");
		goto out;
	}
	span = WAL_BENCH_CEILING_FILE / size * size;
	while (bench_keep_running(s)) {
		start = wal_bench_now_ns();
		for (count = 0; count < WAL_BENCH_FSYNC_SAMPLES; count++) {
			uint64_t t0 = wal_bench_now_ns();

			if (pwrite(fd, buf, size, (off_t)(count * size % span)) != (ssize_t)size ||
			    fdatasync(fd) != 0) {
				bench_skip_with_error(s, "pwrite or fdatasync failed");
				goto out;
			}
			samples[count] = wal_bench_now_ns() - t0;
			if (samples[count] + t0 - start > 2000000000ull) {
				count++;
				break;
			}
		}
	}
	bench_latency_counters(s, samples, count, 1e3); /* Sorts them. */
	if (count > 0) {
		bench_counter(s, "max_us", (double)samples[count - 1] / 1e3, 0);
		bench_counter(s, "samples", count, 0);
	}
out:
	free(buf);
	free(samples);
	if (fd >= 0)
		close(fd);
	wal_bench_rmdir(dir);
}

static void wal_bench_config(struct wal_config *config)
{
	wal_config_default(config);
	config->segment_size = 64u << 20;
	config->batch_size_max = 1u << 20;
	config->buffers_count = 8;
	config->segments_soft_max = 8;
	config->spares_max = 8;
}

static int wal_bench_open(struct bench_state *s, struct wal_bench *b, const char *name,
			  uint64_t groups, uint32_t entry_size, bool direct)
{
	struct loop_config loop_config = {.sq_entries = 64};
	struct wal_config config;
	int rv;

	memset(b, 0, sizeof(*b));
	b->groups = groups;
	rv = wal_bench_mkdir(s, b->dir, name);
	if (rv != 0)
		return rv;
	rv = loop_init(&b->loop, &loop_config);
	if (rv != 0) {
		bench_skip_with_error(s, loop_why(&b->loop));
		rmdir(b->dir);
		return rv;
	}
	wal_bench_config(&config);
	config.direct_io = direct;
	rv = wal_init(&b->wal, &b->loop, b->dir, &config);
	if (rv != 0) {
		bench_skip_with_error(s, wal_why(&b->wal));
		loop_deinit(&b->loop);
		rmdir(b->dir);
		return rv;
	}
	/* The warm-up writes 4 KiB entries whatever the case's size. */
	entry_size = entry_size > 4096 ? entry_size : 4096;
	b->payload = malloc(16 * (size_t)entry_size);
	b->last = calloc(groups + 1, sizeof(*b->last));
	for (uint32_t i = 0; i < 16 * entry_size; i++)
		b->payload[i] = (uint8_t)(i * 131 + 7);
	return 0;
}

static void wal_bench_close(struct wal_bench *b)
{
	wal_deinit(&b->wal);
	loop_deinit(&b->loop);
	free(b->payload);
	free(b->last);
	wal_bench_rmdir(b->dir);
}

static int wal_bench_append(struct wal_bench *b, uint64_t group, uint32_t count,
			    uint32_t entry_size)
{
	struct wal_entry entries[16];
	int rv;

	for (uint32_t i = 0; i < count; i++)
		entries[i] = (struct wal_entry){1, 0, entry_size, b->payload + i * entry_size};
	for (;;) {
		rv = wal_append_entries(&b->wal, group, b->last[group] + 1, entries, count);
		if (rv != -EAGAIN)
			break;
		/* Back-pressure: the batches ahead must reach the disk first. */
		wal_flush(&b->wal);
		if (loop_run(&b->loop, 1) < 0)
			return -EIO;
	}
	if (rv == 0)
		b->last[group] += count;
	return rv;
}

/* Every so often every group compacts to its last entry (as a snapshot
 * would), so the disk in use stays bounded during long runs. */
static int wal_bench_compact(struct wal_bench *b)
{
	struct wal_pin pins[64];
	uint32_t pins_count;
	int rv = 0;

	if (b->wal.stats.bytes_written - b->compacted_at < WAL_BENCH_COMPACT_EVERY)
		return 0;
	b->compacted_at = b->wal.stats.bytes_written;
	for (uint64_t g = 1; g <= b->groups && rv == 0; g++) {
		while ((rv = wal_append_mark(&b->wal, g, b->last[g], 1)) == -EAGAIN) {
			wal_flush(&b->wal);
			loop_run(&b->loop, 1);
		}
	}
	if (rv == 0)
		rv = wal_sync(&b->wal);
	if (rv == 0)
		rv = wal_reclaim(&b->wal, pins, 64, &pins_count);
	return rv;
}

/* Steady state: the WAL writes recycled segments, whose blocks are
 * allocated and written, as the ceiling's file is. Fill and compact as many
 * segments as it keeps spare before measuring. */
static int wal_bench_warm_up(struct wal_bench *b)
{
	const char *env = getenv("FLOTILLA_BENCH_WARMUP_MB");
	uint64_t target = env != NULL
			      ? strtoull(env, NULL, 10) << 20
			      : (uint64_t)b->wal.config.spares_max * b->wal.config.segment_size;
	struct wal_pin pins[64];
	uint32_t pins_count;
	int rv = 0;

	while (rv == 0 && b->wal.stats.bytes_written < target) {
		rv = wal_bench_append(b, 1, 16, 4096);
		if (rv == 0)
			rv = wal_flush(&b->wal);
		if (rv == 0 && loop_run(&b->loop, 0) < 0)
			rv = -EIO;
	}
	if (rv == 0)
		rv = wal_append_mark(&b->wal, 1, b->last[1], 1);
	if (rv == 0)
		rv = wal_sync(&b->wal);
	for (int i = 0; i < 2 && rv == 0; i++)
		rv = wal_reclaim(&b->wal, pins, 64, &pins_count);
	b->compacted_at = b->wal.stats.bytes_written;
	memset(&b->wal.stats, 0, sizeof(b->wal.stats)); /* Count the measured part only. */
	return rv;
}

static void bench_wal_append(struct bench_state *s, void *arg)
{
	const struct wal_bench_case *c = arg;
	uint32_t entry_size = c->entry_size;
	uint64_t groups = (uint64_t)bench_range(s, 0), entries = 0, start, fsyncs = 0;
	uint32_t per_call = groups == 1 ? 16 : 1;
	struct wal_bench b;
	struct wal_stats stats;
	double elapsed, ceiling, written_rate;
	char label[160];
	int rv = 0;

	if (wal_bench_open(s, &b, "append", groups, entry_size, c->direct) != 0)
		return;
	rv = wal_bench_warm_up(&b);
	if (rv != 0) {
		bench_skip_with_error(s, wal_why(&b.wal));
		wal_bench_close(&b);
		return;
	}
	start = wal_bench_now_ns();
	while (bench_keep_running(s)) {
		for (uint64_t g = 1; g <= groups && rv == 0; g++)
			rv = wal_bench_append(&b, g, per_call, entry_size);
		entries += groups * per_call;
		if (rv == 0)
			rv = wal_flush(&b.wal);
		if (rv == 0 && loop_run(&b.loop, 0) < 0)
			rv = -EIO;
		if (rv == 0)
			rv = wal_bench_compact(&b);
		if (rv != 0) {
			bench_skip_with_error(s, wal_why(&b.wal));
			break;
		}
	}
	if (rv == 0)
		rv = wal_sync(&b.wal); /* Everything counted is durable. */
	elapsed = (double)(wal_bench_now_ns() - start) / 1e9;
	wal_stats_get(&b.wal, &stats);
	if (rv != 0 || stats.batches_written == 0) {
		wal_bench_close(&b);
		return;
	}
	written_rate = (double)stats.bytes_written / elapsed;
	/* Same disk, same directory, same mean batch size. */
	ceiling = wal_bench_ceiling_run(b.dir, stats.bytes_written / stats.batches_written,
					stats.bytes_written, 2.0, c->direct, &fsyncs);
	wal_bench_close(&b);
	bench_set_items(s, (int64_t)entries);
	bench_set_bytes(s, (int64_t)(entries * entry_size));
	bench_counter(s, "entries/s", (double)entries / elapsed, 0);
	bench_counter(s, "payload_MB/s", (double)(entries * entry_size) / elapsed / 1e6, 0);
	bench_counter(s, "written_MB/s", written_rate / 1e6, 0);
	bench_counter(s, "fsyncs/s", (double)stats.fsyncs / elapsed, 0);
	bench_counter(s, "fsyncs/entry", (double)stats.fsyncs / (double)entries, 0);
	bench_counter(s, "batch_KiB", (double)stats.bytes_written / stats.batches_written / 1024,
		      0);
	bench_counter(s, "ceiling_MB/s", ceiling / 1e6, 0);
	bench_counter(s, "of_ceiling", ceiling > 0 ? written_rate / ceiling : 0, 0);
	snprintf(label, sizeof(label), "1 fsync per %.0f entries; %.0f%% of the ceiling",
		 (double)entries / (double)stats.fsyncs,
		 ceiling > 0 ? 100 * written_rate / ceiling : 0);
	bench_set_label(s, label);
}

/* Write size_mb of 4 KiB entries of 1,000 groups, durably. */
static int wal_bench_fill(struct wal_bench *b, uint64_t size_mb)
{
	uint64_t target = size_mb << 20;
	int rv = 0;

	while (rv == 0 && b->wal.stats.bytes_written < target) {
		for (uint64_t g = 1; g <= b->groups && rv == 0; g++)
			rv = wal_bench_append(b, g, 1, 4096);
		if (rv == 0)
			rv = wal_flush(&b->wal);
		if (rv == 0 && loop_run(&b->loop, 0) < 0)
			rv = -EIO;
	}
	return rv == 0 ? wal_sync(&b->wal) : rv;
}

static void wal_bench_drop_cache(const struct wal *wal)
{
	for (uint32_t i = 0; wal_segment_at(wal, i) != NULL; i++)
		posix_fadvise(wal_segment_at(wal, i)->fd, 0, 0, POSIX_FADV_DONTNEED);
}

static void bench_wal_recovery(struct bench_state *s, void *arg)
{
	uint64_t size_mb = 1024, records = 0, bytes = 0, total_ns = 0, runs = 0;
	const char *env = getenv("FLOTILLA_BENCH_RECOVERY_MB");
	struct wal_config config;
	struct wal_bench b;
	int rv;

	(void)arg;
	if (env != NULL)
		size_mb = strtoull(env, NULL, 10);
	if (wal_bench_open(s, &b, "recovery", 1000, 4096, false) != 0)
		return;
	rv = wal_bench_fill(&b, size_mb);
	wal_bench_config(&config);
	while (rv == 0 && bench_keep_running(s)) {
		struct wal_stats stats;
		uint64_t start;

		bench_pause(s);
		wal_bench_drop_cache(&b.wal); /* Read from the disk, not the page cache. */
		wal_deinit(&b.wal);
		bench_resume(s);
		start = wal_bench_now_ns();
		rv = wal_init(&b.wal, &b.loop, b.dir, &config);
		total_ns += wal_bench_now_ns() - start;
		runs++;
		if (rv != 0)
			break;
		wal_stats_get(&b.wal, &stats);
		records = stats.recovered_records;
		bytes = stats.disk_size;
	}
	if (rv != 0) {
		bench_skip_with_error(s, wal_why(&b.wal));
		loop_deinit(&b.loop);
		free(b.payload);
		free(b.last);
		wal_bench_rmdir(b.dir);
		return;
	}
	bench_counter(s, "recovery_s", (double)total_ns / 1e9 / (double)runs, 0);
	bench_counter(s, "GiB", (double)bytes / (1 << 30), 0);
	bench_counter(s, "records", (double)records, 0);
	bench_counter(s, "GiB/s", (double)bytes / (1 << 30) / ((double)total_ns / 1e9 / runs), 0);
	wal_bench_close(&b);
}

void bench_wal_register(void);

void bench_wal_register(void)
{
	static const int64_t batches_kib[] = {4, 64, 256, 1024};
	static const int64_t groups[] = {1, 100, 10000};
	static const struct wal_bench_case cases[] = {
	    {128, false}, {4096, false}, {128, true}, {4096, true}};
	static const char *names[] = {"wal/append/128B", "wal/append/4KiB",
				      "wal/append_direct/128B", "wal/append_direct/4KiB"};
	static const char *ceilings[] = {"wal/ceiling", "wal/ceiling_direct"};

	for (int i = 0; i < 2; i++)
		bench_register(&(struct bench_def){.name = ceilings[i],
						   .fn = bench_wal_ceiling,
						   .arg = i ? (void *)ceilings : NULL,
						   .args = batches_kib,
						   .args_count = 4,
						   .arg_name = "batch_kib",
						   .real_time = true,
						   .iterations = 1,
						   .unit = BENCH_UNIT_MS});
	for (int i = 0; i < 4; i++)
		bench_register(&(struct bench_def){.name = names[i],
						   .fn = bench_wal_append,
						   .arg = (void *)&cases[i],
						   .args = groups,
						   .args_count = 3,
						   .arg_name = "groups",
						   .real_time = true,
						   .unit = BENCH_UNIT_US});
	bench_register(&(struct bench_def){.name = "wal/fsync_latency",
					   .fn = bench_wal_fsync_latency,
					   .args = batches_kib,
					   .args_count = 1,
					   .arg_name = "kib",
					   .real_time = true,
					   .iterations = 1,
					   .unit = BENCH_UNIT_MS});
	bench_register(&(struct bench_def){.name = "wal/recovery",
					   .fn = bench_wal_recovery,
					   .real_time = true,
					   .iterations = 2,
					   .unit = BENCH_UNIT_MS});
}
