/* The io_uring loop: callbacks per operation, linked write + fsync, one
 * submission per turn, timers, cross-thread wake-up, sockets, the fault
 * hook, and a clear error when io_uring is blocked. */
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "io/loop.h"
#include "tests/io/io_test.h"

struct done {
	struct loop_op op;
	int res;
	int calls;
	int order; /* Position among completions. */
};

static int completions;

static void done_cb(struct loop_op *op, int res)
{
	struct done *d = (struct done *)(void *)((char *)op - offsetof(struct done, op));

	d->res = res;
	d->calls++;
	d->order = ++completions;
}

struct fx {
	struct loop loop;
	char dir[256];
	char path[300];
	int fd;
};

static int fx_setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	io_test_loop_init(&fx->loop);
	io_test_mkdtemp(fx->dir, "test_loop");
	snprintf(fx->path, sizeof(fx->path), "%s/file", fx->dir);
	fx->fd = open(fx->path, O_RDWR | O_CREAT, 0644);
	assert_true(fx->fd >= 0);
	completions = 0;
	*state = fx;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *fx = *state;

	close(fx->fd);
	loop_deinit(&fx->loop);
	io_test_rmtree(fx->dir);
	free(fx);
	return 0;
}

/* Run turns until every op has completed (bounded). */
static void fx_wait(struct fx *fx, struct done **ops, int count)
{
	for (int turn = 0; turn < 1000; turn++) {
		bool all = true;

		for (int i = 0; i < count; i++)
			all = all && ops[i]->calls > 0;
		if (all)
			return;
		assert_true(loop_run(&fx->loop, 1) >= 0);
	}
	fail_msg("operations did not complete");
}

/* A write linked to an fdatasync, then a read, each with its own callback
 * receiving the kernel's result. */
static void test_write_fsync_read_complete_with_their_results(void **state)
{
	struct fx *fx = *state;
	struct done write = {0}, sync = {0}, read = {0};
	char out[64] = "the quick brown fox", in[64] = {0};

	loop_write(&fx->loop, &write.op, fx->fd, out, sizeof(out), 4096, LOOP_LINK, done_cb);
	loop_fsync(&fx->loop, &sync.op, fx->fd, 0, done_cb);
	fx_wait(fx, (struct done *[]){&write, &sync}, 2);
	assert_int_equal(write.res, sizeof(out));
	assert_int_equal(sync.res, 0);
	assert_true(write.order < sync.order); /* The link orders them. */
	loop_read(&fx->loop, &read.op, fx->fd, in, sizeof(in), 4096, 0, done_cb);
	fx_wait(fx, (struct done *[]){&read}, 1);
	assert_int_equal(read.res, sizeof(in));
	assert_memory_equal(in, out, sizeof(out));
	assert_int_equal(loop_inflight(&fx->loop), 1); /* Only the wake-up read remains. */
}

/* Everything queued in a turn goes to the kernel in one submission. */
static void test_one_submission_serves_a_turn(void **state)
{
	struct fx *fx = *state;
	struct done ops[32] = {0};
	struct done *all[32];
	char buf[512] = {1};
	uint64_t submits = fx->loop.submits_count;

	for (int i = 0; i < 32; i++) {
		loop_write(&fx->loop, &ops[i].op, fx->fd, buf, sizeof(buf), (uint64_t)i * 512, 0,
			   done_cb);
		all[i] = &ops[i];
	}
	assert_true(loop_run(&fx->loop, 32) >= 32);
	assert_int_equal(fx->loop.submits_count - submits, 1);
	fx_wait(fx, all, 32);
	for (int i = 0; i < 32; i++)
		assert_int_equal(ops[i].res, 512);
}

/* A timer does not fire before its delay. (done_cb sees the timer's op:
 * struct loop_timer starts with it, as struct done does.) */
static void test_timer_waits_its_delay(void **state)
{
	struct fx *fx = *state;
	struct loop_timer timer = {0};
	uint64_t start = loop_now_ns(&fx->loop);

	loop_timeout(&fx->loop, &timer, 20, done_cb);
	for (int turn = 0; turn < 100 && timer.armed; turn++)
		assert_true(loop_run(&fx->loop, 1) >= 0);
	assert_false(timer.armed);
	assert_true(loop_now_ns(&fx->loop) - start >= 20 * 1000000ull);
	assert_true(loop_now_ns(&fx->loop) - start < 5000 * 1000000ull);
}

static int timer_results[2];

static void timer_cb(struct loop_op *op, int res)
{
	(void)op;
	timer_results[res == -ETIME ? 0 : 1] = res;
}

static void test_timer_results_are_etime_and_ecanceled(void **state)
{
	struct fx *fx = *state;
	struct loop_timer fire = {0}, cancel = {0};

	timer_results[0] = timer_results[1] = 0;
	loop_timeout(&fx->loop, &fire, 1, timer_cb);
	loop_timeout(&fx->loop, &cancel, 60000, timer_cb);
	loop_timeout_cancel(&fx->loop, &cancel);
	for (int turn = 0; turn < 100 && (fire.armed || cancel.armed); turn++)
		assert_true(loop_run(&fx->loop, 1) >= 0);
	assert_int_equal(timer_results[0], -ETIME);
	assert_int_equal(timer_results[1], -ECANCELED);
}

static int wakes;

static void wake_cb(struct loop *loop)
{
	(void)loop;
	wakes++;
}

static void *wake_thread(void *arg)
{
	usleep(10000);
	loop_wake(arg);
	return NULL;
}

/* Another thread ends a blocking wait with loop_wake(). */
static void test_wake_from_another_thread(void **state)
{
	struct fx *fx = *state;
	struct loop loop;
	struct loop_config config = {.sq_entries = 8, .wake_cb = wake_cb};
	pthread_t thread;

	(void)fx;
	wakes = 0;
	assert_int_equal(loop_init(&loop, &config), 0);
	assert_int_equal(pthread_create(&thread, NULL, wake_thread, &loop), 0);
	for (int turn = 0; turn < 10 && wakes == 0; turn++)
		assert_true(loop_run(&loop, 1) >= 0); /* Blocks until the wake. */
	pthread_join(thread, NULL);
	assert_int_equal(wakes, 1);
	loop_wake(&loop); /* Re-armed: a second wake is seen too. */
	assert_true(loop_run(&loop, 1) >= 0);
	assert_int_equal(wakes, 2);
	loop_deinit(&loop);
}

/* send and recv on a connected socket pair. */
static void test_send_and_recv(void **state)
{
	struct fx *fx = *state;
	struct done send = {0}, recv = {0};
	char out[100] = "hello over the ring", in[100] = {0};
	int fds[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
	loop_recv(&fx->loop, &recv.op, fds[1], in, sizeof(in), 0, done_cb);
	loop_send(&fx->loop, &send.op, fds[0], out, sizeof(out), 0, done_cb);
	fx_wait(fx, (struct done *[]){&send, &recv}, 2);
	assert_int_equal(send.res, sizeof(out));
	assert_int_equal(recv.res, sizeof(out));
	assert_memory_equal(in, out, sizeof(out));
	close(fds[0]);
	close(fds[1]);
}

struct fault_plan {
	enum loop_op_kind kind;
	int res;
	int calls;
};

static int fault_hook(void *arg, const struct loop_fault_site *site)
{
	struct fault_plan *plan = arg;

	plan->calls++;
	return site->kind == plan->kind ? plan->res : 0;
}

/* An injected write error completes the write with it and cancels the
 * fsync linked after it. */
static void test_fault_on_linked_write_cancels_the_fsync(void **state)
{
	struct fx *fx = *state;
	struct fault_plan plan = {LOOP_OP_WRITE, -EIO, 0};
	struct done write = {0}, sync = {0}, after = {0};
	char buf[64] = {0};

	loop_set_fault(&fx->loop, fault_hook, &plan);
	loop_write(&fx->loop, &write.op, fx->fd, buf, sizeof(buf), 0, LOOP_LINK, done_cb);
	loop_fsync(&fx->loop, &sync.op, fx->fd, 0, done_cb);
	plan.kind = LOOP_OP_READ; /* The next, unlinked op is not affected. */
	loop_fsync(&fx->loop, &after.op, fx->fd, 0, done_cb);
	fx_wait(fx, (struct done *[]){&write, &sync, &after}, 3);
	assert_int_equal(write.res, -EIO);
	assert_int_equal(sync.res, -ECANCELED);
	assert_int_equal(after.res, 0);
	loop_set_fault(&fx->loop, NULL, NULL);
}

/* An injected short write transfers fewer bytes and breaks the link, as a
 * short write does in the kernel. */
static void test_short_write_breaks_the_link(void **state)
{
	struct fx *fx = *state;
	struct fault_plan plan = {LOOP_OP_WRITE, 10, 0};
	struct done write = {0}, sync = {0};
	char buf[64], in[64] = {0};

	memset(buf, 0x5a, sizeof(buf));
	loop_set_fault(&fx->loop, fault_hook, &plan);
	loop_write(&fx->loop, &write.op, fx->fd, buf, sizeof(buf), 0, LOOP_LINK, done_cb);
	loop_fsync(&fx->loop, &sync.op, fx->fd, 0, done_cb);
	fx_wait(fx, (struct done *[]){&write, &sync}, 2);
	assert_int_equal(write.res, 10);
	assert_int_equal(sync.res, -ECANCELED);
	assert_int_equal(pread(fx->fd, in, sizeof(in), 0), 10);
	assert_memory_equal(in, buf, 10);
	loop_set_fault(&fx->loop, NULL, NULL);
}

/* A process whose seccomp filter makes io_uring_setup fail gets an error
 * that names the cause. */
static void test_blocked_io_uring_is_explained(void **state)
{
	static const int errnos[] = {ENOSYS, EPERM};

	(void)state;
	for (int i = 0; i < 2; i++) {
		int fds[2], status;
		pid_t pid;

		assert_int_equal(pipe(fds), 0);
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			struct sock_filter code[] = {
			    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
			    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
			    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (uint32_t)errnos[i]),
			    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
			};
			struct sock_fprog prog = {.len = 4, .filter = code};
			struct loop loop;
			struct loop_config config = {0};
			int rv;

			if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
			    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
				_exit(IO_TEST_SKIP);
			rv = loop_init(&loop, &config);
			if (write(fds[1], loop.why, strlen(loop.why) + 1) < 0)
				_exit(2);
			_exit(rv == -errnos[i] ? 0 : 1);
		}
		close(fds[1]);
		char why[400] = {0};
		ssize_t n = read(fds[0], why, sizeof(why) - 1);

		close(fds[0]);
		waitpid(pid, &status, 0);
		if (WEXITSTATUS(status) == IO_TEST_SKIP)
			skip();
		assert_int_equal(WEXITSTATUS(status), 0);
		assert_true(n > 0);
		assert_non_null(strstr(why, "io_uring"));
		if (errnos[i] == ENOSYS)
			assert_non_null(strstr(why, "seccomp"));
		else
			assert_non_null(strstr(why, "io_uring_disabled"));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_write_fsync_read_complete_with_their_results,
					    fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_one_submission_serves_a_turn, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_timer_waits_its_delay, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_timer_results_are_etime_and_ecanceled, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_wake_from_another_thread, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_send_and_recv, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_fault_on_linked_write_cancels_the_fsync, fx_setup,
					    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_short_write_breaks_the_link, fx_setup,
					    fx_teardown),
	    cmocka_unit_test(test_blocked_io_uring_is_explained),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
