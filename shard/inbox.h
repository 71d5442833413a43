/* A bounded multi-producer queue of pointers into one shard thread.
 *
 * Application threads push requests; the shard thread pops them. Each slot
 * carries a sequence number, so producers claim slots with one atomic
 * increment and never wait for each other (a bounded queue in the style of
 * D. Vyukov's MPMC ring). A full queue returns -EAGAIN: back-pressure, never
 * growth. */
#ifndef SHARD_INBOX_H
#define SHARD_INBOX_H

#include <stdatomic.h>
#include <stdint.h>

struct inbox_slot {
	_Atomic uint64_t seq;
	void *item;
};

struct inbox {
	struct inbox_slot *slots;
	uint64_t mask;
	_Alignas(64) _Atomic uint64_t tail; /* Next slot producers claim. */
	_Alignas(64) _Atomic uint64_t head; /* Next slot the consumer reads. */
};

/* capacity is rounded up to a power of two. Returns 0 or -ENOMEM. */
int inbox_init(struct inbox *inbox, uint32_t capacity);
void inbox_deinit(struct inbox *inbox);

/* Any thread. Returns 0 or -EAGAIN when full. */
int inbox_push(struct inbox *inbox, void *item);

/* Consumer thread only. Returns the oldest item or NULL when empty. */
void *inbox_pop(struct inbox *inbox);

/* Items queued now (a snapshot; exact only on the consumer thread). */
uint64_t inbox_depth(struct inbox *inbox);

#endif /* SHARD_INBOX_H */
