/* The simulated backend of io/loop.h: a deterministic world of virtual time,
 * disks and a network, in which the real shard loop, WAL and engine run
 * unchanged (tests only; tests/sim/nodesim.c drives it).
 *
 * A world (struct loop_sim) holds a virtual clock, a seeded PRNG and one
 * event queue ordered by (virtual time, sequence number), so that one seed
 * always replays the same run. Every loop created with loop_init_sim()
 * belongs to a simulated node; the loop_* functions of a sim loop branch
 * once into this file and never touch io_uring:
 *   - Files stay real files (the WAL's synchronous open, pread and readdir
 *     recovery runs as is). loop_write() changes the file at once (the page
 *     cache, which reads see) and keeps the old bytes until an fdatasync of
 *     that file completes; loop_sim_crash() rolls back what no sync covered:
 *     each unsynced write is lost, kept, or torn at a sector boundary.
 *     Completions come after a simulated latency, in order per node.
 *   - Sockets are socketpair() descriptors used only as names: bytes sent
 *     on one are queued with a simulated delay and delivered in order to
 *     the other end's receive (a stream, like TCP). The sim keeps the other
 *     end of each kernel pair, so it sees the shard's shutdown() or close()
 *     as a hang-up (loop_sim_poll()).
 *   - Timers fire at virtual time; loop_now_ns() is the world's clock.
 * Faults, chosen by the world's PRNG at rates the caller sets: write and
 * fdatasync -EIO (the file then fails every later operation), -ENOSPC from
 * writes and loop_allocate(), slow disks (occasional long stalls), network
 * delay, connection resets and partitions (a direction stalls). */
#ifndef IO_LOOP_SIM_H
#define IO_LOOP_SIM_H

#include <stdbool.h>
#include <stdint.h>

#include "io/loop.h"

struct loop_sim;

/* Fault rates, in parts per million of operations unless said otherwise. */
struct loop_sim_faults {
	uint32_t write_eio_ppm;
	uint32_t fsync_eio_ppm;
	uint32_t enospc_ppm;     /* Writes and loop_allocate(). */
	uint32_t disk_stall_ppm; /* An operation waits disk_stall_ms_max at most. */
	uint32_t disk_stall_ms_max;
	uint32_t disk_us_min, disk_us_max; /* Usual latency of one disk operation. */
	uint32_t net_us_min, net_us_max;   /* One-way delay of a send. */
	uint32_t net_spike_ppm;            /* A send delayed up to net_spike_ms_max. */
	uint32_t net_spike_ms_max;
};

/* Create a world whose clock starts at start_ns and whose PRNG is seeded
 * with seed. Returns 0 or -ENOMEM. */
int loop_sim_new(struct loop_sim **sim, uint64_t seed, uint64_t start_ns);

/* Free the world. Every loop on it must be deinitialised first. */
void loop_sim_free(struct loop_sim *sim);

void loop_sim_set_faults(struct loop_sim *sim, const struct loop_sim_faults *faults);

/* The world's PRNG: the next 64 random bits. */
uint64_t loop_sim_rand(struct loop_sim *sim);

uint64_t loop_sim_now_ns(const struct loop_sim *sim);

/* Print a line per event (faults, crashes, connection changes) to stderr. */
void loop_sim_set_verbose(struct loop_sim *sim, bool verbose);

/* Set up loop as a simulated loop of node (any id >= 1) on sim. Returns 0 or
 * -ENOMEM. loop_deinit() detaches it. */
int loop_init_sim(struct loop *loop, const struct loop_config *config, struct loop_sim *sim,
		  uint64_t node);

/* Advance the clock to the earliest pending event and deliver every event
 * due then (completions become ready on their loops). Returns false, with
 * the clock moved to limit_ns, when nothing is due until then. */
bool loop_sim_step(struct loop_sim *sim, uint64_t limit_ns);

/* True when loop has completions ready or was woken: a turn is due. */
bool loop_sim_is_ready(const struct loop *loop);

/* Notice sockets of loop that its owner shut down or closed since the last
 * call: their pending operations complete and their peers see the end of
 * the stream. Call after each turn of the loop. */
void loop_sim_poll(struct loop *loop);

/* A connected pair of simulated sockets between two loops: *fd_a belongs to
 * loop a, *fd_b to loop b. Returns 0 or a negative errno. */
int loop_sim_socketpair(struct loop *a, struct loop *b, int *fd_a, int *fd_b);

/* Break every connection between nodes a and b (both directions): each end
 * sees -ECONNRESET, as a lost TCP connection would show. */
void loop_sim_reset(struct loop_sim *sim, uint64_t a, uint64_t b);

/* Stall (or release) the direction from node a to node b: bytes sent stay
 * queued until it is released. */
void loop_sim_block(struct loop_sim *sim, uint64_t a, uint64_t b, bool blocked);
bool loop_sim_is_blocked(const struct loop_sim *sim, uint64_t a, uint64_t b);

/* Crash node: roll back the writes to its files that no completed fdatasync
 * covered (each lost, kept or torn by the PRNG), and from now on complete
 * every operation of its loops with -ECANCELED at once, without touching
 * any file. The caller then frees the node's shards (their loops'
 * loop_deinit() detaches them). */
void loop_sim_crash(struct loop_sim *sim, uint64_t node);

/* Writes to node's files that no completed fdatasync covers yet. */
uint32_t loop_sim_unsynced(const struct loop_sim *sim, uint64_t node);

/* Counters of what the world injected, for the run's summary. */
struct loop_sim_stats {
	uint64_t events, writes, fsyncs, sends, bytes_sent;
	uint64_t write_eio, fsync_eio, enospc, stalls, resets, writes_lost, writes_torn;
};
const struct loop_sim_stats *loop_sim_stats(const struct loop_sim *sim);

/* The backend of each loop_* function of loop.h for a sim loop: called by
 * loop.c only. */
void loop_sim_deinit(struct loop *loop);
void loop_sim_submit(struct loop *loop, struct loop_op *op, enum loop_op_kind kind, int fd,
		     void *buf, uint32_t size, uint64_t offset, unsigned flags, loop_op_cb cb);
void loop_sim_timeout(struct loop *loop, struct loop_timer *timer, uint64_t timeout_ms);
void loop_sim_timeout_cancel(struct loop *loop, struct loop_timer *timer);
int loop_sim_allocate(struct loop *loop, int fd, uint64_t size);
int loop_sim_run(struct loop *loop, uint32_t wait_count);
void loop_sim_wake(struct loop *loop);

#endif /* IO_LOOP_SIM_H */
