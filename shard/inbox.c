/* The shard inbox: see inbox.h. Memory ordering: a producer publishes its
 * item with a release store of the slot's sequence; the consumer reads the
 * sequence with acquire before the item, so it never sees a half-written slot. */
#include "shard/inbox.h"

#include <errno.h>
#include <stdlib.h>

int inbox_init(struct inbox *inbox, uint32_t capacity)
{
	uint64_t cap = 2;

	while (cap < capacity)
		cap *= 2;
	inbox->slots = calloc(cap, sizeof(*inbox->slots));
	if (inbox->slots == NULL)
		return -ENOMEM;
	for (uint64_t i = 0; i < cap; i++)
		atomic_store_explicit(&inbox->slots[i].seq, i, memory_order_relaxed);
	inbox->mask = cap - 1;
	atomic_store(&inbox->tail, 0);
	atomic_store(&inbox->head, 0);
	return 0;
}

void inbox_deinit(struct inbox *inbox)
{
	free(inbox->slots);
	inbox->slots = NULL;
}

int inbox_push(struct inbox *inbox, void *item)
{
	uint64_t pos = atomic_load_explicit(&inbox->tail, memory_order_relaxed);

	for (;;) {
		struct inbox_slot *slot = &inbox->slots[pos & inbox->mask];
		uint64_t seq = atomic_load_explicit(&slot->seq, memory_order_acquire);
		int64_t diff = (int64_t)(seq - pos);

		if (diff == 0) {
			/* The slot is free for pos: claim it, then publish. */
			if (atomic_compare_exchange_weak_explicit(&inbox->tail, &pos, pos + 1,
								  memory_order_relaxed,
								  memory_order_relaxed)) {
				slot->item = item;
				atomic_store_explicit(&slot->seq, pos + 1, memory_order_release);
				return 0;
			}
		} else if (diff < 0) {
			return -EAGAIN; /* The consumer has not freed this slot yet: full. */
		} else {
			pos = atomic_load_explicit(&inbox->tail, memory_order_relaxed);
		}
	}
}

void *inbox_pop(struct inbox *inbox)
{
	uint64_t pos = atomic_load_explicit(&inbox->head, memory_order_relaxed);
	struct inbox_slot *slot = &inbox->slots[pos & inbox->mask];
	uint64_t seq = atomic_load_explicit(&slot->seq, memory_order_acquire);
	void *item;

	if (seq != pos + 1)
		return NULL; /* Empty, or the producer of this slot has not published yet. */
	item = slot->item;
	/* Free the slot for the producer one lap later. */
	atomic_store_explicit(&slot->seq, pos + inbox->mask + 1, memory_order_release);
	atomic_store_explicit(&inbox->head, pos + 1, memory_order_relaxed);
	return item;
}

uint64_t inbox_depth(struct inbox *inbox)
{
	uint64_t tail = atomic_load_explicit(&inbox->tail, memory_order_relaxed);
	uint64_t head = atomic_load_explicit(&inbox->head, memory_order_relaxed);

	return tail > head ? tail - head : 0;
}
