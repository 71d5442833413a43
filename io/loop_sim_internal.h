/* Internals shared by the simulated loop backend (io/loop_sim*.c only).
 *
 * loop_sim.c      the world: virtual clock, PRNG, event queue, ready lists
 *                 and the sim branch of each loop_* function.
 * loop_sim_disk.c files: the page cache, unsynced writes and their undo
 *                 images, disk faults and latency, crash rollback.
 * loop_sim_net.c  sockets: socketpair connections, delays, stalls, resets.
 *
 * Memory: everything an operation will need is taken when it is submitted,
 * so that a shortage completes that operation with -ENOMEM; what a
 * connection needs later (its end-of-stream chunk, its delivery event, a
 * slot in the event queue) is taken when it is made. Stepping the world,
 * polling and crashing never allocate. */
#ifndef IO_LOOP_SIM_INTERNAL_H
#define IO_LOOP_SIM_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "io/loop.h"
#include "io/loop_sim.h"

enum {
	LOOP_SIM_SECTOR_SIZE = 512,
	/* A stalled direction is looked at again this often. */
	LOOP_SIM_BLOCKED_RETRY_NS = 5000000,
	LOOP_SIM_SEND_NS = 1000, /* A send completes this soon. */
	LOOP_SIM_NODES_MAX = 64,
	/* As the io_uring loop's: twice this may be in flight (its CQ size). */
	LOOP_SIM_SQ_ENTRIES_DEFAULT = 256,
	LOOP_SIM_ARRAY_CAP_FIRST = 16,
};

enum loop_sim_event_kind { LOOP_SIM_EV_OP = 1, LOOP_SIM_EV_DELIVER };

struct loop_sim_event {
	uint64_t at_ns, seq;
	uint8_t kind;
	bool dead; /* Cancelled or taken out early: skipped when popped. */
	int res;
	struct loop_sim_loop *owner; /* LOOP_SIM_EV_OP */
	struct loop_op *op;
	uint64_t sync_file;         /* An fdatasync: its file's id, 0 otherwise. */
	uint64_t sync_seq;          /* Writes up to this one become durable. */
	struct loop_sim_sock *sock; /* LOOP_SIM_EV_DELIVER: the receiving end. */
};

struct loop_sim_ready {
	struct loop_op *op;
	int res;
};

/* The old bytes of one write that no fdatasync has covered yet. */
struct loop_sim_undo {
	uint64_t seq, offset;
	uint32_t size, old_size; /* old_size bytes existed before; the rest was a hole. */
	uint8_t *old;
};

struct loop_sim_file {
	uint64_t id, node;
	dev_t dev;
	ino_t ino;
	int fd; /* The world's own descriptor, opened read-write, never O_DIRECT. */
	bool failed;
	uint64_t seq_next;
	struct loop_sim_undo *undo;
	uint32_t undo_count, undo_cap;
};

struct loop_sim_chunk {
	struct loop_sim_chunk *next;
	uint64_t due_ns;
	uint32_t size;
	bool eof;
	uint8_t data[];
};

/* One end of a simulated connection. */
struct loop_sim_sock {
	int fd;      /* The owner's descriptor: a name only. */
	int hold_fd; /* The other end of its kernel pair; -1 once hung up. */
	uint64_t node;
	struct loop_sim_loop *owner; /* NULL once its loop is gone. */
	struct loop_sim_sock *peer;
	struct loop_sim_chunk *head, *tail; /* Bytes on their way to this end. */
	struct loop_sim_chunk *eof_chunk;   /* Taken at creation: the end of the stream it sends. */
	struct loop_sim_event deliver;      /* Its one delivery event (when deliver_scheduled). */
	bool deliver_scheduled;
	uint64_t last_due_ns;
	struct loop_sim_chunk *in_head, *in_tail; /* Arrived, not yet received. */
	uint32_t in_off;                          /* Bytes of in_head already received. */
	bool eof, reset, shut;
	struct loop_op *recv_op;
	uint8_t *recv_buf;
	uint32_t recv_size;
};

struct loop_sim_loop {
	struct loop_sim *sim;
	struct loop *loop;
	uint64_t node;
	bool woken, crashed, chain_failed;
	uint64_t disk_busy_ns;
	struct loop_sim_ready
	    *ready; /* A ring of loop->inflight_max: each op is on it once at most. */
	uint32_t ready_head, ready_count, ready_cap;
	struct loop_sim_sock **socks; /* Not hung up yet. */
	uint32_t socks_count, socks_cap;
	struct loop_sim_loop *next;
};

struct loop_sim {
	uint64_t start_ns, now_ns, seq, rng;
	bool verbose;
	struct loop_sim_faults faults;
	struct loop_sim_stats stats;
	struct loop_sim_event **heap; /* Room for its operation events plus one per socket. */
	uint32_t heap_count, heap_cap;
	struct loop_sim_loop *loops;
	struct loop_sim_file **files;
	uint32_t files_count, files_cap;
	uint64_t file_ids;
	struct loop_sim_sock **socks; /* Every end ever made, freed with the world. */
	uint32_t socks_count, socks_cap;
	struct loop_sim_sock **by_fd;
	uint32_t by_fd_cap;
	bool blocked[LOOP_SIM_NODES_MAX][LOOP_SIM_NODES_MAX];
};

/* loop_sim.c */
bool loop_sim_chance(struct loop_sim *sim, uint32_t ppm);
uint64_t loop_sim_between(struct loop_sim *sim, uint64_t lo, uint64_t hi);
void loop_sim_say(struct loop_sim *sim, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Room in the event queue for extra more events besides one per socket.
 * Returns 0 or -ENOMEM. */
int loop_sim_heap_reserve(struct loop_sim *sim, uint32_t extra);
/* Queue e (its room reserved) at at_ns, after every event queued before. */
void loop_sim_event_queue(struct loop_sim *sim, struct loop_sim_event *e, uint64_t at_ns,
			  uint8_t kind);
/* Put op's completion on l's ready list, for its next loop_run(). */
void loop_sim_ready_push(struct loop_sim_loop *l, struct loop_op *op, int res);
/* A new operation event with its room in the queue, or NULL (out of memory). */
struct loop_sim_event *loop_sim_event_new(struct loop_sim *sim);
/* Complete op with res at at_ns through e, a new event. */
void loop_sim_complete(struct loop_sim_loop *l, struct loop_sim_event *e, struct loop_op *op,
		       int res, uint64_t at_ns);
/* Complete op with res at at_ns, or with -ENOMEM at once when there is no
 * memory for its event. Returns the event, or NULL. */
struct loop_sim_event *loop_sim_complete_new(struct loop_sim_loop *l, struct loop_op *op, int res,
					     uint64_t at_ns);

/* loop_sim_disk.c */
void loop_sim_disk_free(struct loop_sim *sim);
/* The result of a file operation, and its effect on the file; *synced is
 * the file an fdatasync covers, NULL otherwise. */
int loop_sim_disk_op(struct loop_sim_loop *l, enum loop_op_kind kind, int fd, void *buf,
		     uint32_t size, uint64_t offset, struct loop_sim_file **synced);
/* When the next operation of l's disk completes. */
uint64_t loop_sim_disk_done(struct loop_sim_loop *l);
void loop_sim_disk_synced(struct loop_sim *sim, uint64_t id, uint64_t seq);
/* Roll back every file of node: the disk half of loop_sim_crash(). */
void loop_sim_disk_crash(struct loop_sim *sim, uint64_t node);

/* loop_sim_net.c */
void loop_sim_net_free(struct loop_sim *sim);
void loop_sim_net_op(struct loop_sim_loop *l, struct loop_op *op, enum loop_op_kind kind, int fd,
		     void *buf, uint32_t size);
void loop_sim_net_deliver(struct loop_sim *sim, struct loop_sim_sock *t);
/* l crashed: its pending receives end with -ECANCELED. */
void loop_sim_net_cancel(struct loop_sim_loop *l);
/* l is going away: its sockets look closed to their peers. */
void loop_sim_net_detach_loop(struct loop_sim_loop *l);

#endif /* IO_LOOP_SIM_INTERNAL_H */
