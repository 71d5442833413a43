/* The event loop of one shard: a thin, owned wrapper over io_uring.
 *
 * Every operation is a struct loop_op embedded in its owner, with a callback
 * that receives the completion result unchanged (bytes, 0, or -errno). The
 * owner gets back to itself with container_of(). There is no global dispatch
 * switch: the callback is the dispatch.
 *
 * Submission is batched: loop_write(), loop_fsync(), ... only fill
 * submission queue entries; loop_run() hands the whole turn to the kernel in
 * one io_uring_submit_and_wait() and then calls the callbacks of everything
 * that completed. Callbacks may queue more operations; they go out on the
 * next turn (or at once when the submission queue is full).
 *
 * The interface is deliberately narrow (write, fsync, read, send, recv,
 * timeout, wake, clock, preallocate) so that a deterministic simulated
 * backend implements the same functions for tests: a loop set up with
 * loop_init_sim() (io/loop_sim.h) sends every call there instead of to
 * io_uring. A fault hook lets tests fail or shorten any operation before it
 * reaches the kernel.
 *
 * Threads: a loop belongs to one thread. Only loop_wake() may be called from
 * any thread. */
#ifndef IO_LOOP_H
#define IO_LOOP_H

#include <stdbool.h>
#include <stdint.h>

#include <liburing.h>

struct loop;
struct loop_op;
struct loop_sim;
struct loop_sim_loop;

/* res is cqe->res: bytes transferred, 0, or a negative errno. A timeout
 * reports -ETIME when it fires and -ECANCELED when cancelled. An operation
 * linked after one that failed or transferred fewer bytes than asked
 * reports -ECANCELED. */
typedef void (*loop_op_cb)(struct loop_op *op, int res);

/* Called on the loop thread, from loop_run(), after loop_wake(). */
typedef void (*loop_wake_cb)(struct loop *loop);

enum loop_op_kind {
	LOOP_OP_READ = 1,
	LOOP_OP_WRITE,
	LOOP_OP_FSYNC,
	LOOP_OP_SEND,
	LOOP_OP_RECV,
	LOOP_OP_TIMEOUT,
	LOOP_OP_ALLOCATE, /* loop_allocate(), which runs synchronously. */
};

/* What a fault hook sees of an operation about to be submitted. */
struct loop_fault_site {
	enum loop_op_kind kind;
	int fd;
	uint64_t offset;
	uint32_t size;
};

/* A fault hook returns 0 to let the operation run as asked, a negative errno
 * to complete it with that result without touching the file, or (for a
 * WRITE or READ only) a byte count smaller than size to transfer only that
 * many bytes: a short transfer, as a full disk or a signal would cause. */
typedef int (*loop_fault_fn)(void *arg, const struct loop_fault_site *site);

enum loop_flags {
	LOOP_LINK = 1u << 0, /* The next operation starts only if this one succeeds in full. */
};

/* An in-flight operation. Owned by the loop from submission until its
 * callback runs; the owner must keep it (and its buffer) alive until then. */
struct loop_op {
	loop_op_cb cb;
	int32_t injected_res; /* The result a fault hook chose; used when injected. */
	uint8_t kind;         /* enum loop_op_kind */
	bool injected;
};

/* A one-shot timer. */
struct loop_timer {
	struct loop_op op;
	struct __kernel_timespec ts;
	loop_op_cb cb;
	bool armed;
};

struct loop_config {
	uint32_t sq_entries;  /* Submission queue depth; the CQ is twice this. */
	loop_wake_cb wake_cb; /* May be NULL: loop_wake() then only ends a wait. */
};

/* Visible so callers can embed it; only loop.c touches fields. */
struct loop {
	struct io_uring ring;
	uint32_t inflight;     /* Operations whose completion has not been reaped. */
	uint32_t inflight_max; /* CQ size: more in flight could overflow it. */
	int wake_fd;           /* eventfd; its read is always queued on the ring. */
	uint64_t wake_value;
	struct loop_op wake_op;
	loop_wake_cb wake_cb;
	loop_fault_fn fault;
	void *fault_arg;
	bool chain_failed; /* A fault failed an op with LOOP_LINK: cancel the rest of its chain. */
	bool reaping;
	uint64_t submits_count; /* io_uring_enter calls made by loop_run(). */
	char why[320];          /* Why loop_init() failed, in a sentence. */
	/* The simulated backend (io/loop_sim.h), NULL for io_uring: every
	 * function below branches once on it. */
	struct loop_sim *sim;
	struct loop_sim_loop *sim_loop;
};

/* Set up the ring and the wake-up eventfd. Returns 0 or a negative errno:
 * -ENOSYS (no io_uring in this kernel, or a seccomp filter returns ENOSYS),
 * -EPERM (kernel.io_uring_disabled, io_uring_group, seccomp or an LSM),
 * -ENOMEM, -EINVAL. On failure loop_why() names the cause. */
int loop_init(struct loop *loop, const struct loop_config *config);

/* Tear down the ring. Operations still in flight are abandoned: the caller
 * first lets its owners finish (their buffers may be freed after this). */
void loop_deinit(struct loop *loop);

/* A sentence saying why loop_init() failed. Valid until the loop is reused. */
const char *loop_why(const struct loop *loop);

/* Queue a write of size bytes at offset. flags: LOOP_LINK. */
void loop_write(struct loop *loop, struct loop_op *op, int fd, const void *buf, uint32_t size,
		uint64_t offset, unsigned flags, loop_op_cb cb);

/* Queue a read of up to size bytes at offset. */
void loop_read(struct loop *loop, struct loop_op *op, int fd, void *buf, uint32_t size,
	       uint64_t offset, unsigned flags, loop_op_cb cb);

/* Queue an fdatasync of fd. */
void loop_fsync(struct loop *loop, struct loop_op *op, int fd, unsigned flags, loop_op_cb cb);

/* Queue a send or recv on a connected socket. */
void loop_send(struct loop *loop, struct loop_op *op, int fd, const void *buf, uint32_t size,
	       unsigned flags, loop_op_cb cb);
void loop_recv(struct loop *loop, struct loop_op *op, int fd, void *buf, uint32_t size,
	       unsigned flags, loop_op_cb cb);

/* Arm a one-shot timer that fires after timeout_ms (-ETIME). The timer must
 * not be armed already. */
void loop_timeout(struct loop *loop, struct loop_timer *timer, uint64_t timeout_ms, loop_op_cb cb);

/* Cancel an armed timer: its callback runs with -ECANCELED (or -ETIME if it
 * fired first). Does nothing if the timer is not armed. */
void loop_timeout_cancel(struct loop *loop, struct loop_timer *timer);

/* Preallocate size bytes of fd (fallocate, synchronous: it is rare and
 * happens off the hot path). Returns 0 or a negative errno (-ENOSPC). */
int loop_allocate(struct loop *loop, int fd, uint64_t size);

/* Submit what is queued without waiting. Returns 0 or a negative errno. */
int loop_submit(struct loop *loop);

/* One turn: submit everything queued, wait until at least wait_count
 * operations completed (0: do not wait), and run the callbacks of all that
 * completed. Returns the number of callbacks run, or a negative errno.
 * Must not be called from a callback. */
int loop_run(struct loop *loop, uint32_t wait_count);

/* Wake the loop from any thread: a wait in loop_run() ends and the wake
 * callback runs on the loop thread. Async-signal-safe. */
void loop_wake(struct loop *loop);

/* Monotonic clock, nanoseconds. */
uint64_t loop_now_ns(const struct loop *loop);

/* Operations submitted and not yet reaped. */
uint32_t loop_inflight(const struct loop *loop);

/* Install a fault hook (tests only); fn NULL removes it. */
void loop_set_fault(struct loop *loop, loop_fault_fn fn, void *arg);

#endif /* IO_LOOP_H */
