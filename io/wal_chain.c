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
 *   16: u32 version     1
 *   20: u32 reserved    zero
 *   24: u64 generation  one more at every write; slot = generation % 2
 *   32: u64 head        oldest segment in use; 0 when none
 *   40: u64 tail        newest segment in use whose first batch is durable
 *   48: u64 loss        highest segment lost, 0 if none (see above)
 *   56: u64 reserved    zero
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
#define WAL_CHAIN_VERSION 1
#define WAL_CHAIN_SLOT    64

static_assert(WAL_CHAIN_SLOT <= WAL_BLOCK_SIZE, "a slot fits its block");

static bool wal_chain_decode(const uint8_t *buf, uint64_t *gen, uint64_t *head, uint64_t *tail,
			     uint64_t *loss)
{
	if (le_get64(buf) != XXH3_64bits(buf + 8, WAL_CHAIN_SLOT - 8) ||
	    le_get64(buf + 8) != WAL_CHAIN_MAGIC || le_get32(buf + 16) != WAL_CHAIN_VERSION)
		return false;
	*gen = le_get64(buf + 24);
	*head = le_get64(buf + 32);
	*tail = le_get64(buf + 40);
	*loss = le_get64(buf + 48);
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
	for (uint64_t slot = 0; slot < 2; slot++) {
		uint64_t gen, head, tail, loss;

		if (wal_read_file(fd, buf, sizeof(buf), slot * WAL_BLOCK_SIZE) != 0 ||
		    !wal_chain_decode(buf, &gen, &head, &tail, &loss) || gen % 2 != slot)
			continue;
		if (any && gen < wal->chain_gen)
			continue;
		any = true;
		wal->chain_gen = gen;
		wal->chain_head = head;
		wal->chain_tail = tail;
		wal->chain_loss = loss;
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

int wal_chain_note_tail(struct wal *wal, uint64_t seq)
{
	int rv;

	if (seq <= wal->chain_tail)
		return 0;
	wal->chain_tail = seq;
	if (wal->chain_head == 0)
		wal->chain_head = seq;
	rv = wal_chain_write(wal);
	if (rv != 0)
		wal_say(wal, "writing the WAL's chain file failed: %s; the WAL stops", err_str(rv));
	return rv;
}

void wal_chain_close(struct wal *wal)
{
	if (wal->chain_fd >= 0)
		close(wal->chain_fd);
	wal->chain_fd = -1;
}
