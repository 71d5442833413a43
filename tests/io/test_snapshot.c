/* Snapshot files and the snapshot thread, with flotilla-node's key-value
 * store as the state machine, in a temporary directory: a frozen view saved
 * off the applying thread holds the state of its consistent point; a
 * restore that fails leaves the state as it was; stopping the thread
 * releases every view once. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <xxhash.h>

#include "shard/snapshot.h"
#include "tests/io/io_test.h"
#include "tools/kv.h"

#define GROUP 7

struct fixture {
	char dir[256];
	int dir_fd;
	pthread_mutex_t manifest_lock;
	struct kv kv;
	uint64_t index;
	uint8_t buf[256];
};

static int fixture_setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL || kv_init(&f->kv) != 0)
		return -1;
	io_test_mkdtemp(f->dir, "snapshot");
	f->dir_fd = snapshot_dir_open(f->dir);
	pthread_mutex_init(&f->manifest_lock, NULL);
	if (f->dir_fd < 0)
		return -1;
	*state = f;
	return 0;
}

static int fixture_teardown(void **state)
{
	struct fixture *f = *state;

	close(f->dir_fd);
	io_test_rmtree(f->dir);
	kv_deinit(&f->kv);
	free(f);
	return 0;
}

static void put(struct fixture *f, const char *key, const char *value)
{
	struct kv_cmd cmd = {.op = KV_OP_PUT,
			     .key = key,
			     .key_size = (uint32_t)strlen(key),
			     .value = value,
			     .value_size = (uint32_t)strlen(value)};
	struct fl_entry entry = {.index = ++f->index, .term = 1, .data = f->buf};
	uint64_t result = 99;

	entry.size = kv_cmd_size(&cmd);
	kv_cmd_encode(&cmd, f->buf);
	kv_apply(&f->kv, GROUP, &entry, 1, &result);
	assert_int_equal(result, KV_RESULT_OK);
}

static void del(struct fixture *f, const char *key)
{
	struct kv_cmd cmd = {.op = KV_OP_DELETE, .key = key, .key_size = (uint32_t)strlen(key)};
	struct fl_entry entry = {.index = ++f->index, .term = 1, .data = f->buf};
	uint64_t result = 99;

	entry.size = kv_cmd_size(&cmd);
	kv_cmd_encode(&cmd, f->buf);
	kv_apply(&f->kv, GROUP, &entry, 1, &result);
	assert_int_equal(result, KV_RESULT_OK);
}

static void assert_value(struct kv *kv, const char *key, const char *want)
{
	void *value = NULL;
	uint32_t size = 0;
	int rv = kv_get(kv, GROUP, key, (uint32_t)strlen(key), &value, &size);

	if (want == NULL) {
		assert_int_equal(rv, -ENOENT);
		return;
	}
	assert_int_equal(rv, 0);
	assert_int_equal(size, strlen(want));
	assert_memory_equal(value, want, size);
	free(value);
}

/* Waits for one job of the snapshot thread. */
struct waiter {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint32_t done;
};

static void job_done(struct snapshot_job *job)
{
	struct waiter *w = job->owner;

	pthread_mutex_lock(&w->lock);
	w->done++;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

static struct snapshot_job job_make(struct fixture *f, struct waiter *w, uint64_t index)
{
	struct snapshot_job job = {
	    .dir_fd = f->dir_fd,
	    .meta = {.group = GROUP, .index = index, .term = 1},
	    .sm = {.save_view = kv_save_view, .release = kv_release, .ctx = &f->kv},
	    .done = job_done,
	    .owner = w,
	    .manifest_lock = &f->manifest_lock,
	};

	assert_int_equal(kv_freeze(&f->kv, GROUP, &job.view), 0);
	return job;
}

/* A view frozen at a point is saved as of that point, whatever the group
 * applies while the snapshot thread writes it. */
static void test_frozen_view_saves_its_consistent_point(void **state)
{
	struct fixture *f = *state;
	struct waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
	struct snapshot_worker *worker;
	struct snapshot_job job;
	struct kv_digest before, after;
	struct kv restored;

	put(f, "a", "1");
	put(f, "b", "2");
	kv_digest_get(&f->kv, GROUP, &before);
	job = job_make(f, &w, f->index);
	put(f, "a", "changed after the freeze");
	put(f, "c", "added after the freeze");
	del(f, "b");
	for (int i = 0; i < 200; i++) { /* The live map grows and rehashes. */
		char key[16];

		snprintf(key, sizeof(key), "grow%d", i);
		put(f, key, "x");
	}
	assert_int_equal(snapshot_worker_start(&worker), 0);
	snapshot_worker_submit(worker, &job);
	pthread_mutex_lock(&w.lock);
	while (w.done == 0)
		pthread_cond_wait(&w.cond, &w.lock);
	pthread_mutex_unlock(&w.lock);
	snapshot_worker_stop(worker);
	assert_int_equal(job.rv, 0);
	assert_null(job.view);
	{
		struct snapshot_meta current;

		/* The snapshot thread made it current. */
		assert_int_equal(snapshot_manifest_read(f->dir_fd, GROUP, &current), 0);
		assert_int_equal(current.index, job.meta.index);
		assert_int_equal(current.checksum, job.meta.checksum);
	}

	assert_int_equal(kv_init(&restored), 0);
	assert_int_equal(snapshot_restore(f->dir_fd, &job.meta, kv_restore, &restored), 0);
	assert_value(&restored, "a", "1");
	assert_value(&restored, "b", "2");
	assert_value(&restored, "c", NULL);
	assert_value(&f->kv, "b", NULL); /* The live map went on. */
	assert_value(&f->kv, "a", "changed after the freeze");
	kv_digest_get(&restored, GROUP, &after);
	assert_int_equal(after.digest, before.digest);
	assert_int_equal(after.last_applied_index, before.last_applied_index);
	kv_deinit(&restored);
}

static int save_fill(void *arg, struct fl_snapshot_writer *w)
{
	struct fixture *f = arg;

	return kv_save(&f->kv, GROUP, w);
}

/* A snapshot that ends early fails restore and leaves the map untouched. */
static void test_failed_restore_leaves_the_state_as_it_was(void **state)
{
	struct fixture *f = *state;
	struct snapshot_meta meta = {.group = GROUP, .index = 1, .term = 1};
	struct snapshot_meta cut = {.group = GROUP, .index = 2, .term = 1};
	uint8_t bytes[4096];
	char name[80];
	ssize_t n;
	int fd;

	for (int i = 0; i < 50; i++) {
		char key[16];

		snprintf(key, sizeof(key), "k%d", i);
		put(f, key, "old");
	}
	assert_int_equal(snapshot_save(f->dir_fd, &meta, save_fill, f), 0);
	/* The same bytes cut in half, with a manifest that matches the cut:
	 * they pass verification and fail in the middle of restore. */
	fd = snapshot_open(f->dir_fd, GROUP, 1);
	assert_true(fd >= 0);
	n = read(fd, bytes, sizeof(bytes));
	close(fd);
	assert_true(n > 100 && n < (ssize_t)sizeof(bytes));
	cut.size = (uint64_t)n / 2;
	cut.checksum = XXH3_64bits(bytes, cut.size);
	snprintf(name, sizeof(name), "g%016llx-%016llx.snap", (unsigned long long)GROUP, 2ull);
	fd = openat(f->dir_fd, name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, bytes, cut.size), (ssize_t)cut.size);
	close(fd);

	put(f, "k0", "newer");
	assert_int_equal(snapshot_restore(f->dir_fd, &cut, kv_restore, &f->kv), -EBADMSG);
	assert_value(&f->kv, "k0", "newer");
	assert_value(&f->kv, "k49", "old");
	assert_int_equal(kv_keys_count(&f->kv, GROUP), 50);
}

/* A snapshot larger than the reader's buffer, in many small items, comes
 * back whole. */
static void test_large_snapshot_restores_whole(void **state)
{
	struct fixture *f = *state;
	struct snapshot_meta meta = {.group = GROUP, .index = 1, .term = 1};
	struct kv_digest before, after;
	struct kv restored;

	for (int i = 0; i < 20000; i++) {
		char key[16];

		snprintf(key, sizeof(key), "k%d", i);
		put(f, key, i % 2 ? "odd" : "even");
	}
	kv_digest_get(&f->kv, GROUP, &before);
	assert_int_equal(snapshot_save(f->dir_fd, &meta, save_fill, f), 0);
	assert_true(meta.size > 4 * 64 * 1024);
	assert_int_equal(kv_init(&restored), 0);
	assert_int_equal(snapshot_restore(f->dir_fd, &meta, kv_restore, &restored), 0);
	kv_digest_get(&restored, GROUP, &after);
	assert_int_equal(after.digest, before.digest);
	assert_int_equal(after.keys_count, 20000);
	assert_value(&restored, "k0", "even");
	assert_value(&restored, "k19999", "odd");
	kv_deinit(&restored);
}

static int release_count;

static void count_release(void *ctx, uint64_t group, void *view)
{
	release_count++;
	kv_release(ctx, group, view);
}

/* Stopping the thread finishes or cancels every job, each exactly once,
 * and releases each view exactly once. */
static void test_stop_releases_every_view_once(void **state)
{
	struct fixture *f = *state;
	struct waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
	struct snapshot_worker *worker;
	struct snapshot_job jobs[8];

	put(f, "a", "1");
	release_count = 0;
	assert_int_equal(snapshot_worker_start(&worker), 0);
	for (int i = 0; i < 8; i++) {
		jobs[i] = job_make(f, &w, (uint64_t)i + 1);
		jobs[i].sm.release = count_release;
		snapshot_worker_submit(worker, &jobs[i]);
	}
	snapshot_worker_stop(worker);
	assert_int_equal(w.done, 8);
	assert_int_equal(release_count, 8);
	for (int i = 0; i < 8; i++)
		assert_true(jobs[i].rv == 0 || jobs[i].rv == -ECANCELED);
}

/* The snapshot thread never makes a snapshot current over a newer one (one
 * the shard installed from its leader meanwhile). */
static void test_manifest_never_goes_back(void **state)
{
	struct fixture *f = *state;
	struct waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
	struct snapshot_worker *worker;
	struct snapshot_job job;
	struct snapshot_meta newer = {.group = GROUP, .index = 50, .term = 2}, current;

	put(f, "a", "1");
	assert_int_equal(snapshot_save(f->dir_fd, &newer, save_fill, f), 0);
	assert_int_equal(snapshot_manifest_write(f->dir_fd, &newer), 0);
	job = job_make(f, &w, 40);
	assert_int_equal(snapshot_worker_start(&worker), 0);
	snapshot_worker_submit(worker, &job);
	pthread_mutex_lock(&w.lock);
	while (w.done == 0)
		pthread_cond_wait(&w.cond, &w.lock);
	pthread_mutex_unlock(&w.lock);
	snapshot_worker_stop(worker);
	assert_int_equal(job.rv, -ESTALE);
	assert_int_equal(snapshot_manifest_read(f->dir_fd, GROUP, &current), 0);
	assert_int_equal(current.index, 50);
	assert_int_equal(snapshot_open(f->dir_fd, GROUP, 40), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_frozen_view_saves_its_consistent_point,
					    fixture_setup, fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_failed_restore_leaves_the_state_as_it_was,
					    fixture_setup, fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_stop_releases_every_view_once, fixture_setup,
					    fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_manifest_never_goes_back, fixture_setup,
					    fixture_teardown),
	    cmocka_unit_test_setup_teardown(test_large_snapshot_restores_whole, fixture_setup,
					    fixture_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
