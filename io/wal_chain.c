/* The chain file of the WAL: which segments are in use, so that a whole
 * segment lost (deleted, zeroed, truncated, replaced) is told apart from a
 * spare or from a segment reclaimed.
 *
 * Each segment header names the segment written before it (prev_seq), so
 * the segments in use link up from the newest back to the oldest; what the
 * links cannot tell is where they end: a newest segment zeroed or deleted
 * looks like a spare, an oldest one deleted like one reclaimed. The chain
 * file says both ends, and is written before either end moves:
 *
 *   - the tail moves once the first batch of a new segment is durable, and
 *     the chain file is written and synced before that batch is reported
 *     durable (so before anything in the segment is acknowledged). A crash
 *     in between leaves a segment one past the tail whose header links to
 *     the tail: recovery takes it.
 *   - the head moves before the oldest segments are retired (wal_reclaim):
 *     a crash in between leaves dead segments before the head, which are
 *     recycled as spares.
 *
 * It also keeps a bound on the terms of the WAL's hard states: no hard
 * state this WAL has reported durable names a term above it. A group whose
 * hard state is lost (a lost segment, both copies of its last hard state
 * damaged) cannot know which votes it cast; it may have voted in any term
 * up to the bound and in none above, so it starts at the term after the
 * bound (shard/recover.c; engine/raft_repair.c, REPAIR). The bound is raised
 * before a batch is reported durable whose hard states name a term above it,
 * like the tail (wal_chain_note_durable()), with headroom, so that the chain
 * file is written about once per WAL_CHAIN_BOUND_HEADROOM terms of the
 * shard's busiest group, not once per election. It is known only when it
 * covers every hard state in the WAL: a chain file of version 1 has none,
 * and it is first set at a start that found the whole WAL intact (every
 * record verified, no segment lost), from the highest term recovered; at a
 * start with damage it stays unknown (0) until such a start.
 *
 * It also keeps the loss: once a segment was lost, every group is damaged
 * from the first segment after it at every start (a reset written since
 * supersedes that), until the segments written after the loss begin to be
 * reclaimed: a group whose records were all in the lost segment is unknown
 * to the WAL, and the caller must keep starting such groups in repair
 * until every group has been started once since (wal_has_lost_segments()).
 *
 * CHAIN FILE "chain": two 64-byte slots, at offsets 0 and 4096 (one block
 * each), written alternately, so that a write torn by a crash leaves the
 * other; the valid slot with the higher generation holds. Little-endian.
 *    0: u64 checksum    XXH3-64 (seed 0) of bytes 8..63
 *    8: u64 magic       "FLOTCHN1"
 *   16: u32 version     2 (1: no term bound, read as none known)
 *   20: u32 reserved    zero
 *   24: u64 generation  one more at every write; slot = generation % 2
 *   32: u64 head        oldest segment in use; 0 when none
 *   40: u64 tail        newest segment in use whose first batch is durable
 *   48: u64 loss        highest segment lost, 0 if none (see above)
 *   56: u64 term_bound  no hard state in the WAL names a later term; 0 if
 *                       none is known (version 1: reserved, zero)
 * A WAL whose segments are all of format 2 predates the chain file: it
 * gets one on open. A WAL with a segment of format 3 and no chain file (or
 * none that verifies) lost it: every group repairs. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>

#include "base/assert.h"
#include "base/err.h"
#include "base/le.h"
#include "io/wal_internal.h"

#define WAL_CHAIN_MAGIC   0x314e4843544f4c46ull /* "FLOTCHN1" read as little-endian. */
#define WAL_CHAIN_VERSION 2                     /* Reads version 1 too (no term bound). */
#define WAL_CHAIN_SLOT    64

static_assert(WAL_CHAIN_SLOT <= WAL_BLOCK_SIZE, "a slot fits its block");

struct wal_chain_slot {
	uint64_t gen, head, tail, loss, term_bound;
};

static bool wal_chain_decode(const uint8_t *buf, struct wal_chain_slot *slot)
{
	uint32_t version = le_get32(buf + 16);

	if (le_get64(buf) != XXH3_64bits(buf + 8, WAL_CHAIN_SLOT - 8) ||
	    le_get64(buf + 8) != WAL_CHAIN_MAGIC || version < 1 || version > WAL_CHAIN_VERSION)
		return false;
	slot->gen = le_get64(buf + 24);
	slot->head = le_get64(buf + 32);
	slot->tail = le_get64(buf + 40);
	slot->loss = le_get64(buf + 48);
	slot->term_bound = version >= 2 ? le_get64(buf + 56) : 0;
	return true;
}

int wal_chain_read(struct wal *wal, bool *found)
{
	uint8_t buf[WAL_CHAIN_SLOT];
	bool any = false;
	int fd, rv = 0;

	*found = false;
	fd = openat(wal->dir_fd, WAL_CHAIN_NAME,
		    (wal->config.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	for (uint64_t i = 0; i < 2; i++) {
		struct wal_chain_slot slot;

		if (wal_read_file(fd, buf, sizeof(buf), i * WAL_BLOCK_SIZE) != 0 ||
		    !wal_chain_decode(buf, &slot) || slot.gen % 2 != i)
			continue;
		if (any && slot.gen < wal->chain_gen)
			continue;
		any = true;
		wal->chain_gen = slot.gen;
		wal->chain_head = slot.head;
		wal->chain_tail = slot.tail;
		wal->chain_loss = slot.loss;
		wal->chain_term_bound = slot.term_bound;
	}
	if (!any)
		rv = WAL_ERR_CORRUPT;
	*found = true;
	if (wal->config.read_only)
		close(fd);
	else
		wal->chain_fd = fd;
	return rv;
}

int wal_chain_write(struct wal *wal)
{
	uint8_t buf[WAL_CHAIN_SLOT] = {0};
	uint64_t gen = wal->chain_gen + 1;
	ssize_t n;

	ASSERT(!wal->config.read_only);
	ASSERT(wal->chain_head <= wal->chain_tail || wal->chain_tail == 0);
	if (wal->chain_fd < 0) {
		wal->chain_fd =
		    openat(wal->dir_fd, WAL_CHAIN_NAME, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		if (wal->chain_fd < 0)
			return -errno;
		/* The name must be durable before anything relies on the file. */
		if (wal_segments_sync_dir(wal) != 0)
			return -errno;
	}
	le_put64(buf + 8, WAL_CHAIN_MAGIC);
	le_put32(buf + 16, WAL_CHAIN_VERSION);
	le_put64(buf + 24, gen);
	le_put64(buf + 32, wal->chain_head);
	le_put64(buf + 40, wal->chain_tail);
	le_put64(buf + 48, wal->chain_loss);
	le_put64(buf + 56, wal->chain_term_bound);
	le_put64(buf, XXH3_64bits(buf + 8, WAL_CHAIN_SLOT - 8));
	n = pwrite(wal->chain_fd, buf, sizeof(buf), (off_t)((gen % 2) * WAL_BLOCK_SIZE));
	if (n != (ssize_t)sizeof(buf))
		return n < 0 ? -errno : -EIO;
	/* Durable before the end it moves is relied on (see above). */
	if (fdatasync(wal->chain_fd) != 0)
		return -errno;
	wal->chain_gen = gen;
	return 0;
}

/* A bound over term, with headroom; short of UINT64_MAX, so that the term
 * after it exists (no real group gets near: the engine refuses terms past
 * 2^63). */
static uint64_t wal_chain_bound_over(uint64_t term)
{
	if (term >= UINT64_MAX - 1 - WAL_CHAIN_BOUND_HEADROOM)
		return UINT64_MAX - 1;
	return term + WAL_CHAIN_BOUND_HEADROOM;
}

/* Raise the term bound, if one is known, over every hard state appended so
 * far. Returns whether it moved. */
static bool wal_chain_raise_bound(struct wal *wal)
{
	if (wal->chain_term_bound == 0 || wal->hard_term_max <= wal->chain_term_bound)
		return false;
	wal->chain_term_bound = wal_chain_bound_over(wal->hard_term_max);
	return true;
}

int wal_chain_note_durable(struct wal *wal, uint64_t seq)
{
	bool moved = wal_chain_raise_bound(wal);
	int rv;

	if (seq > wal->chain_tail) {
		wal->chain_tail = seq;
		if (wal->chain_head == 0)
			wal->chain_head = seq;
		moved = true;
	}
	if (!moved)
		return 0;
	rv = wal_chain_write(wal);
	if (rv != 0)
		wal_say(wal, "writing the WAL's chain file failed: %s; the WAL stops", err_str(rv));
	return rv;
}

void wal_chain_settle_bound(struct wal *wal)
{
	const struct wal_stats *st = &wal->stats;
	uint64_t max = 0;

	for (uint32_t i = 0; i < wal->groups_count; i++) {
		const struct wal_group *g = &wal->groups[i];

		if (!g->used)
			continue;
		max = g->hard.term > max ? g->hard.term : max;
		max = g->damaged_term > max ? g->damaged_term : max;
	}
	if (max > wal->hard_term_max)
		wal->hard_term_max = max;
	/* A batch of a later term written but never reported durable (the
	 * process stopped between its fdatasync and the chain file's): its
	 * hard state was recovered, and may be granted again from now on. */
	if (wal_chain_raise_bound(wal) || wal->chain_term_bound != 0)
		return;
	/* None known: the highest term recovered bounds them all only if every
	 * record of the WAL was read. */
	if (st->segments_lost != 0 || st->chain_lost || st->damaged_unnamed ||
	    st->damaged_records != 0 || st->damaged_groups != 0 || wal->chain_loss != 0)
		return;
	wal->chain_term_bound = wal_chain_bound_over(wal->hard_term_max);
}

bool wal_term_bound(const struct wal *wal, uint64_t *term)
{
	*term = wal->chain_term_bound;
	return wal->chain_term_bound != 0;
}

void wal_chain_close(struct wal *wal)
{
	if (wal->chain_fd >= 0)
		close(wal->chain_fd);
	wal->chain_fd = -1;
}
