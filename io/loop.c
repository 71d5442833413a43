/* The io_uring loop: submission with a callback per operation, timers,
 * a cross-thread wake-up and a fault hook for tests.
 *
 * The happy path of a turn is: owners queue SQEs with loop_write() and
 * friends (each tagged with the address of its struct loop_op as user_data),
 * loop_run() makes one io_uring_submit_and_wait() call, then copies the
 * completions out of the CQ in chunks, advances the CQ head and only then
 * runs the callbacks, so a callback that queues new work never races the
 * ring's head.
 *
 * Failure modes: a full submission queue is submitted and retried; more
 * operations in flight than the completion queue holds is a bug (asserted).
 * user_data 0 marks completions nobody waits for (timeout removal). */
#include "io/loop.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/assert.h"
#include "io/loop_sim.h"

#define LOOP_SQ_ENTRIES_DEFAULT 256
#define LOOP_REAP_CHUNK         64

static void loop_wake_done(struct loop_op *op, int res);

static int loop_read_sysctl(const char *path)
{
	char text[32];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	text[n] = '\0';
	return atoi(text);
}

/* Name the cause of an io_uring_queue_init() failure in loop->why. */
static void loop_explain(struct loop *loop, int rv)
{
	int disabled = loop_read_sysctl("/proc/sys/kernel/io_uring_disabled");
	int group = loop_read_sysctl("/proc/sys/kernel/io_uring_group");

	if (rv == -ENOSYS) {
		snprintf(loop->why, sizeof(loop->why),
			 "io_uring is unavailable (ENOSYS): the kernel was built without "
			 "io_uring, or a seccomp filter (such as a container runtime's default "
			 "profile) blocks io_uring_setup");
	} else if (rv == -EPERM && disabled == 2) {
		snprintf(loop->why, sizeof(loop->why),
			 "io_uring is disabled on this host: kernel.io_uring_disabled=2 "
			 "(set it to 0, or to 1 with kernel.io_uring_group, to allow it)");
	} else if (rv == -EPERM && disabled == 1) {
		snprintf(loop->why, sizeof(loop->why),
			 "io_uring is restricted on this host: kernel.io_uring_disabled=1 allows "
			 "only privileged processes and members of kernel.io_uring_group=%d, "
			 "and this process is neither",
			 group);
	} else if (rv == -EPERM) {
		snprintf(loop->why, sizeof(loop->why),
			 "io_uring_setup was denied (EPERM) although kernel.io_uring_disabled=%d: "
			 "a seccomp filter or a security module (SELinux, AppArmor) blocks it",
			 disabled);
	} else if (rv == -ENOMEM) {
		snprintf(loop->why, sizeof(loop->why),
			 "io_uring_setup failed (ENOMEM): not enough memory for the ring, or the "
			 "locked-memory limit (ulimit -l) is too low for this kernel");
	} else {
		snprintf(loop->why, sizeof(loop->why), "io_uring_setup failed: %s", strerror(-rv));
	}
}

static void loop_arm_wake(struct loop *loop)
{
	loop_read(loop, &loop->wake_op, loop->wake_fd, &loop->wake_value, sizeof(loop->wake_value),
		  0, 0, loop_wake_done);
}

static void loop_wake_done(struct loop_op *op, int res)
{
	struct loop *loop = (struct loop *)((char *)op - offsetof(struct loop, wake_op));

	if (res < 0 && res != -EINTR && res != -EAGAIN)
		return; /* The ring is going away (-ECANCELED). */
	loop_arm_wake(loop);
	if (loop->wake_cb != NULL)
		loop->wake_cb(loop);
}

int loop_init(struct loop *loop, const struct loop_config *config)
{
	struct io_uring_params params;
	uint32_t entries = config->sq_entries ? config->sq_entries : LOOP_SQ_ENTRIES_DEFAULT;
	int rv;

	memset(loop, 0, sizeof(*loop));
	loop->wake_fd = -1;
	loop->wake_cb = config->wake_cb;

	/* COOP_TASKRUN saves an interrupt per completion: completions are run
	 * when we enter the kernel anyway, once per turn. Older kernels reject
	 * the flag with EINVAL; fall back to no flags then. */
	memset(&params, 0, sizeof(params));
	params.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_CQSIZE;
	params.cq_entries = entries * 2;
	rv = io_uring_queue_init_params(entries, &loop->ring, &params);
	if (rv == -EINVAL) {
		memset(&params, 0, sizeof(params));
		params.flags = IORING_SETUP_CQSIZE;
		params.cq_entries = entries * 2;
		rv = io_uring_queue_init_params(entries, &loop->ring, &params);
	}
	if (rv < 0) {
		loop_explain(loop, rv);
		goto err;
	}
	loop->inflight_max = params.cq_entries;

	loop->wake_fd = eventfd(0, EFD_CLOEXEC);
	if (loop->wake_fd < 0) {
		rv = -errno;
		snprintf(loop->why, sizeof(loop->why), "eventfd failed: %s", strerror(errno));
		goto err_after_ring;
	}
	loop_arm_wake(loop);
	return 0;

err_after_ring:
	io_uring_queue_exit(&loop->ring);
err:
	return rv;
}

void loop_deinit(struct loop *loop)
{
	if (loop->sim) {
		loop_sim_deinit(loop);
		return;
	}
	io_uring_queue_exit(&loop->ring);
	if (loop->wake_fd >= 0)
		close(loop->wake_fd);
	loop->wake_fd = -1;
}

const char *loop_why(const struct loop *loop)
{
	return loop->why;
}

/* Never returns NULL: a full SQ is submitted to make room. */
static struct io_uring_sqe *loop_sqe(struct loop *loop)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&loop->ring);

	if (sqe == NULL) {
		int rv = io_uring_submit(&loop->ring);

		ASSERT(rv >= 0);
		sqe = io_uring_get_sqe(&loop->ring);
	}
	ASSERT(sqe != NULL);
	ASSERT(loop->inflight < loop->inflight_max); /* More would overflow the CQ. */
	loop->inflight++;
	return sqe;
}

/* Apply the fault hook (and the cancellation of a chain a fault broke).
 * Returns true when the op was completed by injection: the caller queues
 * nothing else. May shorten *size and clear LOOP_LINK in *flags. */
static bool loop_inject(struct loop *loop, struct loop_op *op, struct loop_fault_site *site,
			unsigned *flags)
{
	int res = 0;

	op->injected = false;
	if (loop->chain_failed)
		res = -ECANCELED;
	else if (loop->fault != NULL)
		res = loop->fault(loop->fault_arg, site);
	if (res < 0) {
		struct io_uring_sqe *sqe = loop_sqe(loop);

		/* A NOP carries the injected result back through the CQ, so the
		 * callback still runs from loop_run() like any completion. */
		io_uring_prep_nop(sqe);
		io_uring_sqe_set_data(sqe, op);
		op->injected = true;
		op->injected_res = res;
		loop->chain_failed = (*flags & LOOP_LINK) != 0;
		return true;
	}
	if (res > 0 && (uint32_t)res < site->size &&
	    (site->kind == LOOP_OP_WRITE || site->kind == LOOP_OP_READ)) {
		/* The kernel will see a complete transfer of fewer bytes, so it
		 * would not break the link: break it here instead. */
		site->size = (uint32_t)res;
		loop->chain_failed = (*flags & LOOP_LINK) != 0;
		*flags &= ~(unsigned)LOOP_LINK;
		return false;
	}
	return false;
}

static void loop_finish_sqe(struct io_uring_sqe *sqe, struct loop_op *op, unsigned flags,
			    loop_op_cb cb)
{
	op->cb = cb;
	io_uring_sqe_set_data(sqe, op);
	if (flags & LOOP_LINK)
		sqe->flags |= IOSQE_IO_LINK;
}

void loop_write(struct loop *loop, struct loop_op *op, int fd, const void *buf, uint32_t size,
		uint64_t offset, unsigned flags, loop_op_cb cb)
{
	struct loop_fault_site site = {LOOP_OP_WRITE, fd, offset, size};
	struct io_uring_sqe *sqe;

	if (loop->sim) {
		loop_sim_submit(loop, op, LOOP_OP_WRITE, fd, (void *)buf, size, offset, flags, cb);
		return;
	}
	op->cb = cb;
	op->kind = LOOP_OP_WRITE;
	if (loop_inject(loop, op, &site, &flags))
		return;
	sqe = loop_sqe(loop);
	io_uring_prep_write(sqe, fd, buf, site.size, offset);
	loop_finish_sqe(sqe, op, flags, cb);
}

void loop_read(struct loop *loop, struct loop_op *op, int fd, void *buf, uint32_t size,
	       uint64_t offset, unsigned flags, loop_op_cb cb)
{
	struct loop_fault_site site = {LOOP_OP_READ, fd, offset, size};
	struct io_uring_sqe *sqe;

	if (loop->sim) {
		loop_sim_submit(loop, op, LOOP_OP_READ, fd, buf, size, offset, flags, cb);
		return;
	}
	op->cb = cb;
	op->kind = LOOP_OP_READ;
	/* The loop's own wake-up read is not subject to faults. */
	if (op != &loop->wake_op && loop_inject(loop, op, &site, &flags))
		return;
	sqe = loop_sqe(loop);
	io_uring_prep_read(sqe, fd, buf, site.size, offset);
	loop_finish_sqe(sqe, op, flags, cb);
}

void loop_fsync(struct loop *loop, struct loop_op *op, int fd, unsigned flags, loop_op_cb cb)
{
	struct loop_fault_site site = {LOOP_OP_FSYNC, fd, 0, 0};
	struct io_uring_sqe *sqe;

	if (loop->sim) {
		loop_sim_submit(loop, op, LOOP_OP_FSYNC, fd, NULL, 0, 0, flags, cb);
		return;
	}
	op->cb = cb;
	op->kind = LOOP_OP_FSYNC;
	if (loop_inject(loop, op, &site, &flags))
		return;
	sqe = loop_sqe(loop);
	io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
	loop_finish_sqe(sqe, op, flags, cb);
}

void loop_send(struct loop *loop, struct loop_op *op, int fd, const void *buf, uint32_t size,
	       unsigned flags, loop_op_cb cb)
{
	struct loop_fault_site site = {LOOP_OP_SEND, fd, 0, size};
	struct io_uring_sqe *sqe;

	if (loop->sim) {
		loop_sim_submit(loop, op, LOOP_OP_SEND, fd, (void *)buf, size, 0, flags, cb);
		return;
	}
	op->cb = cb;
	op->kind = LOOP_OP_SEND;
	if (loop_inject(loop, op, &site, &flags))
		return;
	sqe = loop_sqe(loop);
	io_uring_prep_send(sqe, fd, buf, site.size, MSG_NOSIGNAL);
	loop_finish_sqe(sqe, op, flags, cb);
}

void loop_recv(struct loop *loop, struct loop_op *op, int fd, void *buf, uint32_t size,
	       unsigned flags, loop_op_cb cb)
{
	struct loop_fault_site site = {LOOP_OP_RECV, fd, 0, size};
	struct io_uring_sqe *sqe;

	if (loop->sim) {
		loop_sim_submit(loop, op, LOOP_OP_RECV, fd, buf, size, 0, flags, cb);
		return;
	}
	op->cb = cb;
	op->kind = LOOP_OP_RECV;
	if (loop_inject(loop, op, &site, &flags))
		return;
	sqe = loop_sqe(loop);
	io_uring_prep_recv(sqe, fd, buf, site.size, 0);
	loop_finish_sqe(sqe, op, flags, cb);
}

static void loop_timer_done(struct loop_op *op, int res)
{
	struct loop_timer *timer =
	    (struct loop_timer *)((char *)op - offsetof(struct loop_timer, op));

	timer->armed = false;
	timer->cb(op, res);
}

void loop_timeout(struct loop *loop, struct loop_timer *timer, uint64_t timeout_ms, loop_op_cb cb)
{
	struct io_uring_sqe *sqe;

	ASSERT(!timer->armed);
	timer->ts.tv_sec = (long long)(timeout_ms / 1000);
	timer->ts.tv_nsec = (long long)(timeout_ms % 1000) * 1000000;
	timer->cb = cb;
	timer->armed = true;
	timer->op.kind = LOOP_OP_TIMEOUT;
	timer->op.injected = false;
	if (loop->sim) {
		timer->op.cb = loop_timer_done;
		loop_sim_timeout(loop, timer, timeout_ms);
		return;
	}
	sqe = loop_sqe(loop);
	io_uring_prep_timeout(sqe, &timer->ts, 0, 0);
	loop_finish_sqe(sqe, &timer->op, 0, loop_timer_done);
}

void loop_timeout_cancel(struct loop *loop, struct loop_timer *timer)
{
	struct io_uring_sqe *sqe;

	if (!timer->armed)
		return;
	if (loop->sim) {
		loop_sim_timeout_cancel(loop, timer);
		return;
	}
	sqe = io_uring_get_sqe(&loop->ring);
	if (sqe == NULL) {
		ASSERT(io_uring_submit(&loop->ring) >= 0);
		sqe = io_uring_get_sqe(&loop->ring);
		ASSERT(sqe != NULL);
	}
	/* The removal's own completion carries user_data 0 and is dropped;
	 * the timer's callback reports -ECANCELED. */
	io_uring_prep_timeout_remove(sqe, (uint64_t)(uintptr_t)&timer->op, 0);
	io_uring_sqe_set_data(sqe, NULL);
}

int loop_allocate(struct loop *loop, int fd, uint64_t size)
{
	struct loop_fault_site site = {LOOP_OP_ALLOCATE, fd, 0, (uint32_t)size};
	int rv;

	if (loop->sim)
		return loop_sim_allocate(loop, fd, size);
	if (loop->fault != NULL) {
		rv = loop->fault(loop->fault_arg, &site);
		if (rv < 0)
			return rv;
	}
	if (fallocate(fd, 0, 0, (off_t)size) == 0)
		return 0;
	if (errno != EOPNOTSUPP)
		return -errno;
	rv = posix_fallocate(fd, 0, (off_t)size); /* Emulated by writing zeros. */
	return -rv;
}

int loop_submit(struct loop *loop)
{
	int rv;

	if (loop->sim)
		return 0;
	rv = io_uring_submit(&loop->ring);

	return rv < 0 ? rv : 0;
}

static int loop_reap(struct loop *loop)
{
	struct loop_op *ops[LOOP_REAP_CHUNK];
	int results[LOOP_REAP_CHUNK];
	int total = 0;

	for (;;) {
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;

		io_uring_for_each_cqe (&loop->ring, head, cqe) {
			if (n == LOOP_REAP_CHUNK)
				break;
			ops[n] = io_uring_cqe_get_data(cqe);
			results[n] = cqe->res;
			n++;
		}
		if (n == 0)
			break;
		/* Release the CQ slots before any callback queues more work. */
		io_uring_cq_advance(&loop->ring, n);
		loop->reaping = true;
		for (unsigned i = 0; i < n; i++) {
			struct loop_op *op = ops[i];

			if (op == NULL)
				continue;
			ASSERT(loop->inflight > 0);
			loop->inflight--;
			if (op->injected) {
				op->injected = false;
				results[i] = op->injected_res;
			}
			op->cb(op, results[i]); /* Bytes transferred, or -errno. */
			total++;
		}
		loop->reaping = false;
	}
	return total;
}

int loop_run(struct loop *loop, uint32_t wait_count)
{
	int rv;

	ASSERT(!loop->reaping); /* Not from a callback. */
	if (loop->sim)
		return loop_sim_run(loop, wait_count);
	if (wait_count > loop->inflight)
		wait_count = loop->inflight;
	rv = io_uring_submit_and_wait(&loop->ring, wait_count);
	loop->submits_count++;
	if (rv < 0 && rv != -EINTR && rv != -EBUSY && rv != -ETIME)
		return rv;
	return loop_reap(loop);
}

void loop_wake(struct loop *loop)
{
	uint64_t one = 1;
	ssize_t n;

	if (loop->sim) {
		loop_sim_wake(loop);
		return;
	}
	/* A blocking eventfd write only blocks near a counter of 2^64, which
	 * a reader that drains it every turn never reaches. */
	do {
		n = write(loop->wake_fd, &one, sizeof(one));
	} while (n < 0 && errno == EINTR);
}

uint64_t loop_now_ns(const struct loop *loop)
{
	struct timespec ts;

	if (loop != NULL && loop->sim) /* Some callers pass no loop. */
		return loop_sim_now_ns(loop->sim);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint32_t loop_inflight(const struct loop *loop)
{
	return loop->inflight;
}

void loop_set_fault(struct loop *loop, loop_fault_fn fn, void *arg)
{
	loop->fault = fn;
	loop->fault_arg = arg;
	loop->chain_failed = false;
}
