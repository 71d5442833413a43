/* The simulated loop backend (io/loop_sim.h): virtual time, the page cache
 * and its rollback on a crash, stream sockets, timers, and the faults. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "io/loop.h"
#include "io/loop_sim.h"

#define START_NS ((uint64_t)1000000000)

struct done {
	struct loop_op op;
	int res;
	int calls;
};

static void done_cb(struct loop_op *op, int res)
{
	struct done *d = (struct done *)op;

	d->res = res;
	d->calls++;
}

struct timer_done {
	struct loop_timer t; /* First: the callback's op is &t.op. */
	int res;
	int calls;
};

static void timer_cb(struct loop_op *op, int res)
{
	struct timer_done *d = (struct timer_done *)(void *)op;

	d->res = res;
	d->calls++;
}

struct fixture {
	struct loop_sim *sim;
	struct loop a, b;
	char dir[64], path[96];
	int fd;
};

static void fixture_init(struct fixture *f, uint64_t seed)
{
	struct loop_config lc = {0};
	const char *base = getenv("TMPDIR");

	snprintf(f->dir, sizeof(f->dir), "%s/loop-sim-XXXXXX", base ? base : P_tmpdir);
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/file", f->dir);
	f->fd = open(f->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	assert_true(f->fd >= 0);
	assert_int_equal(loop_sim_new(&f->sim, seed, START_NS), 0);
	assert_int_equal(loop_init_sim(&f->a, &lc, f->sim, 1), 0);
	assert_int_equal(loop_init_sim(&f->b, &lc, f->sim, 2), 0);
}

static void fixture_deinit(struct fixture *f)
{
	loop_deinit(&f->a);
	loop_deinit(&f->b);
	loop_sim_free(f->sim);
	close(f->fd);
	unlink(f->path);
	rmdir(f->dir);
}

/* Step the world until d completed, at most steps times. */
static void run_until(struct fixture *f, struct loop *loop, struct done *d, int steps)
{
	for (int i = 0; i < steps && d->calls == 0; i++) {
		loop_run(loop, 0);
		if (d->calls == 0)
			loop_sim_step(f->sim, UINT64_MAX);
	}
	loop_run(loop, 0);
}

static void file_bytes(int fd, uint64_t offset, void *buf, size_t size)
{
	assert_int_equal(pread(fd, buf, size, (off_t)offset), (ssize_t)size);
}

/* The clock is virtual: it moves only when an event is due. */
static void test_clock_is_virtual(void **state)
{
	struct fixture f;
	struct timer_done d = {0};

	(void)state;
	fixture_init(&f, 1);
	assert_int_equal(loop_now_ns(&f.a), START_NS);
	loop_timeout(&f.a, &d.t, 250, timer_cb);
	assert_true(loop_sim_step(f.sim, UINT64_MAX));
	assert_int_equal(loop_now_ns(&f.a), START_NS + 250 * 1000000ull);
	loop_run(&f.a, 0);
	assert_int_equal(d.calls, 1);
	assert_int_equal(d.res, -ETIME);
	fixture_deinit(&f);
}

/* A cancelled timer reports -ECANCELED and never fires. */
static void test_timer_cancel(void **state)
{
	struct fixture f;
	struct timer_done d = {0};

	(void)state;
	fixture_init(&f, 1);
	loop_timeout(&f.a, &d.t, 100, timer_cb);
	loop_timeout_cancel(&f.a, &d.t);
	loop_run(&f.a, 0);
	assert_int_equal(d.calls, 1);
	assert_int_equal(d.res, -ECANCELED);
	assert_false(loop_sim_step(f.sim, START_NS + 1000000000ull));
	loop_run(&f.a, 0);
	assert_int_equal(d.calls, 1);
	fixture_deinit(&f);
}

/* A write is visible at once; a crash before its fdatasync completed rolls
 * it back to lost, kept or torn at a sector: never anything else. */
static void test_unsynced_write_rolls_back(void **state)
{
	int lost = 0, kept = 0, torn = 0;

	(void)state;
	for (uint64_t seed = 1; seed <= 60; seed++) {
		struct fixture f;
		struct done w = {0};
		uint8_t buf[2048], back[2048];
		uint32_t cut = 0;

		fixture_init(&f, seed);
		memset(buf, 0xab, sizeof(buf));
		loop_write(&f.a, &w.op, f.fd, buf, sizeof(buf), 512, 0, done_cb);
		file_bytes(f.fd, 512, back, sizeof(back)); /* The page cache has it. */
		assert_memory_equal(back, buf, sizeof(buf));
		loop_sim_crash(f.sim, 1);
		file_bytes(f.fd, 512, back, sizeof(back));
		while (cut < sizeof(back) && back[cut] == 0xab)
			cut++;
		for (uint32_t i = cut; i < sizeof(back); i++)
			assert_int_equal(back[i], 0); /* A prefix survives, then the hole. */
		assert_int_equal(cut % 512, 0);
		lost += cut == 0;
		kept += cut == sizeof(buf);
		torn += cut > 0 && cut < sizeof(buf);
		loop_run(&f.a, 0); /* The write completes, cancelled. */
		assert_int_equal(w.res, -ECANCELED);
		fixture_deinit(&f);
	}
	assert_true(lost > 0 && kept > 0 && torn > 0);
}

/* Once an fdatasync completed, a crash keeps what it covered. */
static void test_synced_write_survives_crash(void **state)
{
	struct fixture f;
	struct done w = {0}, s = {0};
	uint8_t buf[4096], back[4096];

	(void)state;
	fixture_init(&f, 3);
	memset(buf, 0x5a, sizeof(buf));
	loop_write(&f.a, &w.op, f.fd, buf, sizeof(buf), 0, LOOP_LINK, done_cb);
	loop_fsync(&f.a, &s.op, f.fd, 0, done_cb);
	run_until(&f, &f.a, &s, 10);
	assert_int_equal(w.res, (int)sizeof(buf));
	assert_int_equal(s.res, 0);
	assert_int_equal(loop_sim_unsynced(f.sim, 1), 0);
	loop_sim_crash(f.sim, 1);
	file_bytes(f.fd, 0, back, sizeof(back));
	assert_memory_equal(back, buf, sizeof(buf));
	fixture_deinit(&f);
}

/* An fdatasync that fails fails the file for good, and a link after a
 * failed write is cancelled. */
static void test_fsync_eio_fails_the_file(void **state)
{
	struct fixture f;
	struct loop_sim_faults faults = {.fsync_eio_ppm = 1000000};
	struct done w = {0}, s = {0}, w2 = {0};
	uint8_t buf[512] = {1};

	(void)state;
	fixture_init(&f, 4);
	loop_sim_set_faults(f.sim, &faults);
	loop_write(&f.a, &w.op, f.fd, buf, sizeof(buf), 0, LOOP_LINK, done_cb);
	loop_fsync(&f.a, &s.op, f.fd, 0, done_cb);
	run_until(&f, &f.a, &s, 10);
	assert_int_equal(s.res, -EIO);
	loop_write(&f.a, &w2.op, f.fd, buf, sizeof(buf), 0, 0, done_cb);
	run_until(&f, &f.a, &w2, 10);
	assert_int_equal(w2.res, -EIO);
	fixture_deinit(&f);
}

/* Bytes sent arrive in order at the other end; a reset ends both ends. */
static void test_stream_in_order_then_reset(void **state)
{
	struct fixture f;
	struct done sends[8] = {0}, r = {0};
	char out[8][4], in[64];
	size_t got = 0;
	int fa, fb;

	(void)state;
	fixture_init(&f, 5);
	assert_int_equal(loop_sim_socketpair(&f.a, &f.b, &fa, &fb), 0);
	for (int i = 0; i < 8; i++) {
		snprintf(out[i], sizeof(out[i]), "%03d", i);
		loop_send(&f.a, &sends[i].op, fa, out[i], 3, 0, done_cb);
	}
	for (int i = 0; i < 100 && got < 24; i++) {
		r.calls = 0;
		loop_recv(&f.b, &r.op, fb, in + got, (uint32_t)(sizeof(in) - got), 0, done_cb);
		run_until(&f, &f.b, &r, 100);
		assert_true(r.res > 0);
		got += (size_t)r.res;
	}
	assert_int_equal(got, 24);
	assert_memory_equal(in, "000001002003004005006007", 24);
	r.calls = 0;
	loop_recv(&f.b, &r.op, fb, in, sizeof(in), 0, done_cb);
	loop_sim_reset(f.sim, 1, 2);
	loop_run(&f.b, 0);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.res, -ECONNRESET);
	loop_run(&f.a, 0);
	close(fa);
	close(fb);
	fixture_deinit(&f);
}

/* A shutdown() of one end is seen by the other as the end of the stream. */
static void test_shutdown_is_end_of_stream(void **state)
{
	struct fixture f;
	struct done r = {0};
	char in[8];
	int fa, fb;

	(void)state;
	fixture_init(&f, 6);
	assert_int_equal(loop_sim_socketpair(&f.a, &f.b, &fa, &fb), 0);
	loop_recv(&f.b, &r.op, fb, in, sizeof(in), 0, done_cb);
	shutdown(fa, SHUT_RDWR);
	loop_sim_poll(&f.a);
	run_until(&f, &f.b, &r, 100);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.res, 0);
	close(fa);
	close(fb);
	fixture_deinit(&f);
}

/* A stalled direction holds its bytes until released. */
static void test_blocked_direction_stalls(void **state)
{
	struct fixture f;
	struct done s = {0}, r = {0};
	char in[8];
	int fa, fb;

	(void)state;
	fixture_init(&f, 7);
	assert_int_equal(loop_sim_socketpair(&f.a, &f.b, &fa, &fb), 0);
	loop_sim_block(f.sim, 1, 2, true);
	loop_send(&f.a, &s.op, fa, "hey", 3, 0, done_cb);
	loop_recv(&f.b, &r.op, fb, in, sizeof(in), 0, done_cb);
	for (int i = 0; i < 50; i++) {
		loop_sim_step(f.sim, UINT64_MAX);
		loop_run(&f.a, 0);
		loop_run(&f.b, 0);
	}
	assert_int_equal(s.res, 3); /* Sent: it sits in the network. */
	assert_int_equal(r.calls, 0);
	loop_sim_block(f.sim, 1, 2, false);
	run_until(&f, &f.b, &r, 100);
	assert_int_equal(r.res, 3);
	close(fa);
	close(fb);
	fixture_deinit(&f);
}

/* The same seed gives the same run. */
static void test_same_seed_same_times(void **state)
{
	uint64_t times[2][16];

	(void)state;
	for (int run = 0; run < 2; run++) {
		struct fixture f;
		struct loop_sim_faults faults = {.disk_us_min = 1,
						 .disk_us_max = 5000,
						 .disk_stall_ppm = 200000,
						 .disk_stall_ms_max = 50};
		uint8_t buf[512] = {0};

		fixture_init(&f, 42);
		loop_sim_set_faults(f.sim, &faults);
		for (int i = 0; i < 16; i++) {
			struct done w = {0};

			loop_write(&f.a, &w.op, f.fd, buf, sizeof(buf), 0, 0, done_cb);
			run_until(&f, &f.a, &w, 10);
			times[run][i] = loop_now_ns(&f.a);
		}
		fixture_deinit(&f);
	}
	assert_memory_equal(times[0], times[1], sizeof(times[0]));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_clock_is_virtual),
	    cmocka_unit_test(test_timer_cancel),
	    cmocka_unit_test(test_unsynced_write_rolls_back),
	    cmocka_unit_test(test_synced_write_survives_crash),
	    cmocka_unit_test(test_fsync_eio_fails_the_file),
	    cmocka_unit_test(test_stream_in_order_then_reset),
	    cmocka_unit_test(test_shutdown_is_end_of_stream),
	    cmocka_unit_test(test_blocked_direction_stalls),
	    cmocka_unit_test(test_same_seed_same_times),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
