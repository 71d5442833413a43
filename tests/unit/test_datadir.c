/* The data directory's manifest and lock (shard/datadir.c): round trips,
 * corruption refused, atomic replacement, checks against the configuration,
 * adoption of a directory without a manifest, and the lock. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/err.h"
#include "base/log.h"
#include "shard/datadir.h"

static const struct datadir_expect expect = {.cluster_id = 7, .node_id = 2, .shards_count = 4};

static char *dir_new(void)
{
	char *dir = strdup("flotilla-datadir-XXXXXX");

	assert_non_null(mkdtemp(dir));
	return dir;
}

static void dir_free(char *dir)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	free(dir);
}

static void touch(const char *dir, const char *name, bool directory)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (directory) {
		assert_int_equal(mkdir(path, 0755), 0);
	} else {
		int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);

		assert_true(fd >= 0);
		assert_int_equal(write(fd, "data", 4), 4);
		close(fd);
	}
}

static bool exists(const char *dir, const char *name)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return access(path, F_OK) == 0;
}

/* Overwrite byte at of dir's manifest with value, or cut it to size. */
static void manifest_damage(const char *dir, long at, int value, long size)
{
	char path[512];
	uint8_t byte = (uint8_t)value;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, DATADIR_MANIFEST);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	if (at >= 0)
		assert_int_equal(pwrite(fd, &byte, 1, at), 1);
	if (size >= 0)
		assert_int_equal(ftruncate(fd, size), 0);
	close(fd);
}

static const struct datadir_manifest sample = {.version = DATADIR_VERSION,
					       .shards_count = 4,
					       .cluster_id = 7,
					       .node_id = 2,
					       .incarnation = 0x1234567890abcdefull,
					       .created_s = 1700000000};

static void assert_manifest_equal(const struct datadir_manifest *a,
				  const struct datadir_manifest *b)
{
	assert_int_equal(a->version, b->version);
	assert_int_equal(a->shards_count, b->shards_count);
	assert_int_equal(a->cluster_id, b->cluster_id);
	assert_int_equal(a->node_id, b->node_id);
	assert_int_equal(a->incarnation, b->incarnation);
	assert_int_equal(a->created_s, b->created_s);
}

/* Encoded, written and read back, a manifest is what it was. */
static void test_manifest_round_trips(void **state)
{
	uint8_t buf[DATADIR_MANIFEST_SIZE];
	struct datadir_manifest got;
	char *dir = dir_new();

	(void)state;
	datadir_manifest_encode(&sample, buf);
	assert_int_equal(datadir_manifest_decode(&got, buf, sizeof(buf)), 0);
	assert_manifest_equal(&got, &sample);
	assert_int_equal(datadir_manifest_read(dir, &got), -ENOENT);
	assert_int_equal(datadir_manifest_write(dir, &sample), 0);
	assert_int_equal(datadir_manifest_read(dir, &got), 0);
	assert_manifest_equal(&got, &sample);
	assert_false(exists(dir, DATADIR_MANIFEST_TEMP));
	dir_free(dir);
}

/* Any flipped byte, a short or long file, or another version is refused. */
static void test_manifest_corruption_is_refused(void **state)
{
	uint8_t buf[DATADIR_MANIFEST_SIZE];
	struct datadir_manifest got, newer = sample;
	char *dir = dir_new();

	(void)state;
	datadir_manifest_encode(&sample, buf);
	for (size_t i = 0; i < sizeof(buf); i++) {
		buf[i] ^= 0x10;
		assert_int_equal(datadir_manifest_decode(&got, buf, sizeof(buf)), ERR_DIR_CORRUPT);
		buf[i] ^= 0x10;
	}
	assert_int_equal(datadir_manifest_decode(&got, buf, sizeof(buf) - 1), ERR_DIR_CORRUPT);
	newer.version = DATADIR_VERSION + 1; /* A checksum that matches, a format we do not know. */
	datadir_manifest_encode(&newer, buf);
	assert_int_equal(datadir_manifest_decode(&got, buf, sizeof(buf)), ERR_DIR_CORRUPT);

	assert_int_equal(datadir_manifest_write(dir, &sample), 0);
	manifest_damage(dir, 20, 0xff, -1);
	assert_int_equal(datadir_manifest_read(dir, &got), ERR_DIR_CORRUPT);
	assert_int_equal(datadir_manifest_write(dir, &sample), 0);
	manifest_damage(dir, -1, 0, 40);
	assert_int_equal(datadir_manifest_read(dir, &got), ERR_DIR_CORRUPT);
	assert_int_equal(datadir_manifest_write(dir, &sample), 0);
	manifest_damage(dir, -1, 0, 65);
	assert_int_equal(datadir_manifest_read(dir, &got), ERR_DIR_CORRUPT);
	dir_free(dir);
}

/* A write cut before its rename leaves the old manifest whole, and the
 * leftover temporary file neither counts nor blocks the next write. */
static void test_manifest_write_is_atomic(void **state)
{
#ifdef FLOTILLA_TEST_HOOKS
	struct datadir_manifest got, next = sample;
	struct datadir dd;
	char why[1024];
	char *dir = dir_new();

	(void)state;
	assert_int_equal(datadir_manifest_write(dir, &sample), 0);
	next.incarnation = 99;
	datadir_test_stop_before_rename = 1;
	assert_int_equal(datadir_manifest_write(dir, &next), -EINTR);
	assert_true(exists(dir, DATADIR_MANIFEST_TEMP));
	assert_int_equal(datadir_manifest_read(dir, &got), 0);
	assert_manifest_equal(&got, &sample);
	/* The node starts on the old manifest. */
	assert_int_equal(datadir_open(&dd, dir, &expect, why, sizeof(why)), 0);
	assert_int_equal(dd.manifest.incarnation, sample.incarnation);
	datadir_close(&dd);
	assert_int_equal(datadir_manifest_write(dir, &next), 0);
	assert_false(exists(dir, DATADIR_MANIFEST_TEMP));
	assert_int_equal(datadir_manifest_read(dir, &got), 0);
	assert_int_equal(got.incarnation, 99);
	dir_free(dir);
#else
	(void)state;
	skip(); /* The cut write is a test hook. */
#endif
}

/* An empty directory gets a manifest with a random incarnation, which a
 * later open finds unchanged. */
static void test_empty_directory_gets_a_manifest(void **state)
{
	struct datadir dd, again;
	char why[1024];
	char *dir = dir_new(), *other = dir_new();

	(void)state;
	assert_int_equal(datadir_open(&dd, dir, &expect, why, sizeof(why)), 0);
	assert_true(exists(dir, DATADIR_MANIFEST));
	assert_int_not_equal(dd.manifest.incarnation, 0);
	assert_int_equal(dd.manifest.node_id, 2);
	assert_int_equal(dd.manifest.cluster_id, 7);
	assert_int_equal(dd.manifest.shards_count, 4);
	datadir_close(&dd);
	assert_int_equal(datadir_open(&again, dir, &expect, why, sizeof(why)), 0);
	assert_int_equal(again.manifest.incarnation, dd.manifest.incarnation);
	datadir_close(&again);
	/* Another directory, another incarnation. */
	assert_int_equal(datadir_open(&again, other, &expect, why, sizeof(why)), 0);
	assert_int_not_equal(again.manifest.incarnation, dd.manifest.incarnation);
	datadir_close(&again);
	dir_free(dir);
	dir_free(other);
}

/* Another node id, cluster id or shard count is refused, naming both values. */
static void test_mismatch_is_refused_naming_both(void **state)
{
	struct datadir_expect node3 = expect, cluster8 = expect, shards3 = expect;
	struct datadir dd;
	char why[1024];
	char *dir = dir_new();

	(void)state;
	assert_int_equal(datadir_open(&dd, dir, &expect, why, sizeof(why)), 0);
	datadir_close(&dd);
	node3.node_id = 3;
	assert_int_equal(datadir_open(&dd, dir, &node3, why, sizeof(why)), ERR_DIR_MISMATCH);
	assert_non_null(strstr(why, "belongs to node 2 of cluster 7, not node 3"));
	assert_non_null(strstr(why, "start node 2 on it, or give node 3 an empty directory"));
	assert_int_equal(dd.lock_fd, -1);
	cluster8.cluster_id = 8;
	assert_int_equal(datadir_open(&dd, dir, &cluster8, why, sizeof(why)), ERR_DIR_MISMATCH);
	assert_non_null(strstr(why, "belongs to node 2 of cluster 7, not to cluster 8"));
	shards3.shards_count = 3;
	assert_int_equal(datadir_open(&dd, dir, &shards3, why, sizeof(why)), ERR_DIR_MISMATCH);
	assert_non_null(strstr(why, "made with 4 shards, not 3"));
	assert_non_null(strstr(why, "cannot change"));
	/* Still the original's. */
	assert_int_equal(datadir_open(&dd, dir, &expect, why, sizeof(why)), 0);
	datadir_close(&dd);
	dir_free(dir);
}

/* A corrupt manifest is refused, naming the file. */
static void test_corrupt_manifest_is_refused_naming_it(void **state)
{
	struct datadir dd;
	char why[1024], name[512];
	char *dir = dir_new();

	(void)state;
	assert_int_equal(datadir_open(&dd, dir, &expect, why, sizeof(why)), 0);
	datadir_close(&dd);
	manifest_damage(dir, 33, 0x5a, -1);
	assert_int_equal(datadir_open(&dd, dir, &expect, why, sizeof(why)), ERR_DIR_CORRUPT);
	snprintf(name, sizeof(name), "%s/%s", dir, DATADIR_MANIFEST);
	assert_non_null(strstr(why, name));
	assert_non_null(strstr(why, "fails verification"));
	dir_free(dir);
}

/* A directory of an older Flotilla (shard directories, no manifest) is
 * adopted when its shards are exactly the configured ones. */
static void test_directory_without_manifest_is_adopted_if_it_fits(void **state)
{
	struct datadir_expect two = expect;
	struct datadir dd;
	char why[1024];
	char *dir = dir_new();

	(void)state;
	two.shards_count = 2;
	touch(dir, "shard-0", true);
	touch(dir, "shard-1", true);
	touch(dir, "shard-0.snapshots", true);
	touch(dir, "lost+found", true);
	assert_int_equal(datadir_open(&dd, dir, &expect, why, sizeof(why)), ERR_DIR_MISMATCH);
	assert_non_null(strstr(why, "holds 2 shard directories"));
	assert_non_null(strstr(why, "configured with 4 shards"));
	assert_false(exists(dir, DATADIR_MANIFEST));
	assert_int_equal(datadir_open(&dd, dir, &two, why, sizeof(why)), 0);
	assert_true(exists(dir, DATADIR_MANIFEST));
	assert_int_equal(dd.manifest.shards_count, 2);
	datadir_close(&dd);
	dir_free(dir);

	dir = dir_new(); /* A shard past the count. */
	touch(dir, "shard-0", true);
	touch(dir, "shard-5", true);
	assert_int_equal(datadir_open(&dd, dir, &expect, why, sizeof(why)), ERR_DIR_MISMATCH);
	assert_non_null(strstr(why, "shard-5"));
	dir_free(dir);
}

/* A directory without a manifest that holds anything else is refused, naming it. */
static void test_unrelated_files_are_refused(void **state)
{
	struct datadir dd;
	char why[1024];
	char *dir = dir_new();

	(void)state;
	touch(dir, "shard-0", true);
	touch(dir, "notes.txt", false);
	assert_int_equal(datadir_open(&dd, dir, &expect, why, sizeof(why)), ERR_DIR_FOREIGN);
	assert_non_null(strstr(why, "notes.txt"));
	assert_false(exists(dir, DATADIR_MANIFEST));
	assert_true(exists(dir, "notes.txt"));   /* Never removed, */
	assert_false(exists(dir, DATADIR_LOCK)); /* and nothing added. */
	dir_free(dir);

	dir = dir_new(); /* Named like a shard, but a file. */
	touch(dir, "shard-1", false);
	assert_int_equal(datadir_open(&dd, dir, &expect, why, sizeof(why)), ERR_DIR_FOREIGN);
	assert_non_null(strstr(why, "shard-1"));
	dir_free(dir);
}

/* A second open of a locked directory is refused, in this process and in
 * another, naming the holder's PID; the lock goes with the holder. */
static void test_second_holder_is_refused_naming_the_pid(void **state)
{
	struct datadir dd, second;
	char why[1024], pid_text[64];
	char *dir = dir_new();
	int ready[2], stop[2], status;
	pid_t child;

	(void)state;
	assert_int_equal(datadir_open(&dd, dir, &expect, why, sizeof(why)), 0);
	assert_int_equal(datadir_open(&second, dir, &expect, why, sizeof(why)), ERR_DIR_IN_USE);
	snprintf(pid_text, sizeof(pid_text), "another node of this process (pid %ld",
		 (long)getpid());
	assert_non_null(strstr(why, pid_text));
	datadir_close(&dd);

	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(stop), 0);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) { /* Hold the directory until told. */
		char c = 0;
		int rv = datadir_open(&dd, dir, &expect, why, sizeof(why));

		(void)!write(ready[1], &rv, sizeof(rv));
		(void)!read(stop[0], &c, 1);
		_exit(rv == 0 ? 0 : 1);
	}
	{
		int rv = -1;

		assert_int_equal(read(ready[0], &rv, sizeof(rv)), (ssize_t)sizeof(rv));
		assert_int_equal(rv, 0);
	}
	assert_int_equal(datadir_open(&second, dir, &expect, why, sizeof(why)), ERR_DIR_IN_USE);
	snprintf(pid_text, sizeof(pid_text), "in use by process %ld", (long)child);
	assert_non_null(strstr(why, pid_text));
	assert_int_equal(write(stop[1], "x", 1), 1);
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(datadir_open(&second, dir, &expect, why, sizeof(why)), 0);
	datadir_close(&second);
	close(ready[0]), close(ready[1]), close(stop[0]), close(stop[1]);
	dir_free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_manifest_round_trips),
	    cmocka_unit_test(test_manifest_corruption_is_refused),
	    cmocka_unit_test(test_manifest_write_is_atomic),
	    cmocka_unit_test(test_empty_directory_gets_a_manifest),
	    cmocka_unit_test(test_mismatch_is_refused_naming_both),
	    cmocka_unit_test(test_corrupt_manifest_is_refused_naming_it),
	    cmocka_unit_test(test_directory_without_manifest_is_adopted_if_it_fits),
	    cmocka_unit_test(test_unrelated_files_are_refused),
	    cmocka_unit_test(test_second_holder_is_refused_naming_the_pid),
	};

	log_mute(true);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
