/* Recovery at start: every group the WAL knows, from its snapshot and log;
 * groups whose storage lost data start as repairing members. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "base/assert.h"
#include "base/err.h"
#include "shard/shard_internal.h"

/* Restore the state machine from the snapshot of meta, unless it is a
 * witness's: an empty file whose membership names this node a witness, or
 * does not name it (a snapshot a witness installed was taken before it
 * joined). A witness's state machine holds nothing of the group. */
static int recover_restore(struct shard *s, const struct snapshot_meta *meta)
{
	uint64_t id = s->config.node_id;

	if (group_conf_is_witness(&meta->conf, id) ||
	    (meta->size == 0 && raft_conf_role(&meta->conf, id) == RAFT_MEMBER_NONE))
		return 0;
	if (s->config.sm.restore == NULL)
		return -ENOTSUP;
	return snapshot_restore(s->snap_dir, meta, s->config.sm.restore, s->config.sm.ctx);
}

/* Start group from its current snapshot, if it has one: restore the state
 * machine from the file and begin the log after it. The manifest is written
 * before the WAL's mark, so it is at or past the mark; WAL entries at or
 * below it are skipped, and a WAL entry at its index with another term
 * means the log after it was never this snapshot's (Raft §7): dropped. */
static int recover_snapshot(struct shard *s, const struct wal_group *wg, struct raft_boot *boot,
			    uint64_t *next, uint64_t *size)
{
	struct snapshot_meta meta;
	uint64_t term = 0;
	int rv = snapshot_manifest_read(s->snap_dir, wg->group, &meta);

	if (rv == -ENOENT)
		return wg->mark_index == 0 ? 0 : WAL_ERR_GAP; /* A mark with no snapshot. */
	if (rv != 0)
		return rv;
	if (meta.index < wg->mark_index)
		return WAL_ERR_GAP;
	rv = recover_restore(s, &meta);
	if (rv != 0)
		return rv;
	boot->snapshot = (struct raft_snapshot_meta){meta.index, meta.term, meta.conf};
	boot->applied = meta.index;
	*size = meta.size;
	*next = meta.index + 1;
	if (wal_term(&s->wal, wg->group, meta.index, &term) == 0 && term != meta.term)
		*next = wg->last_index + 1;
	if (*next < wg->first_index && *next <= wg->last_index)
		return WAL_ERR_GAP;
	return 0;
}

enum recover_record { RECOVER_HARD, RECOVER_RESET, RECOVER_MARK };

/* Append a hard state, a reset or a mark of group at start. Start is not
 * group processing: when the batch buffers are full it waits for what was
 * appended to be durable (wal_sync), once. */
static int recover_append(struct shard *s, uint64_t group, enum recover_record kind,
			  const struct wal_hard *hard, uint64_t index, uint64_t term)
{
	int rv = -EAGAIN;

	for (int tries = 0; tries < 2 && rv == -EAGAIN; tries++) {
		rv = kind == RECOVER_HARD    ? wal_append_hard(&s->wal, group, hard)
		     : kind == RECOVER_RESET ? wal_append_reset(&s->wal, group, index, term)
					     : wal_append_mark(&s->wal, group, index, term);
		if (rv == -EAGAIN && tries == 0) {
			int sync = wal_sync(&s->wal);

			if (sync != 0)
				return sync;
		}
	}
	return rv;
}

/* A repair id for group (raft_boot.repair_id): differs from one start of
 * the process to the next. */
static uint64_t recover_repair_id(uint64_t group)
{
	struct timespec ts;
	uint64_t seed[3];

	clock_gettime(CLOCK_REALTIME, &ts);
	seed[0] = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	seed[1] = (uint64_t)getpid();
	seed[2] = group;
	return XXH3_64bits(seed, sizeof(seed)) | 1;
}

/* REPAIR: group, starting to repair, cannot prove its hard state (a lost
 * segment or a damaged hard state may have held a later term and a vote of
 * it). No hard state of the WAL named a term above its bound (io/wal_chain.c),
 * so the group never voted in the term after it: it starts there, with no
 * vote (engine/raft_repair.c says why this is safe). With no bound known it
 * keeps the term it has, as said once per shard: a vote it cast in a later
 * term could then be cast again. */
static void recover_term(struct shard *s, uint64_t group, struct wal_hard *hard)
{
	uint64_t bound;

	if (wal_term_bound(&s->wal, &bound)) {
		/* The WAL raised its bound over every term it recovered: the
		 * group's is at most the bound (the larger is taken anyway). */
		hard->term = (hard->term > bound ? hard->term : bound) + 1;
		hard->vote = RAFT_NONE;
		return;
	}
	if (s->unbounded_said)
		return;
	s->unbounded_said = true;
	log_shard(&s->config.log, LOG_LEVEL_WARN, s->config.shard_index,
		  "the WAL knows no bound on the terms its hard states named (its chain file "
		  "predates it or was lost, or the WAL was damaged before one was set); group %llu "
		  "and any other group repairing here keep the term they recovered, and a vote "
		  "cast in a later term before the loss could be cast again",
		  (unsigned long long)group);
}

/* Start group id, whose storage lost data (a WAL record or its snapshot
 * failed verification; what says which), as a repairing member: from its
 * own snapshot if that verifies, else from nothing, with no log after it
 * (raft_boot.repair; engine/raft_repair.c, REPAIR, says why this is safe). The WAL
 * is reset to that snapshot first, so that the damaged records are
 * superseded and what the repair writes wins on every later recovery; a
 * damaged snapshot's files go once that reset is durable (the WAL's mark
 * then names no snapshot). It starts past every term it may have voted
 * in (recover_term()). Other groups are untouched. */
static int recover_damaged(struct shard *s, uint64_t id, const char *what)
{
	const struct wal_group *wg = wal_group_find(&s->wal, id);
	struct wal_hard hard = wg->hard;
	uint64_t damaged_term = wg->damaged_term;
	struct raft_boot boot = {.repair = true, .repair_id = recover_repair_id(id)};
	struct snapshot_meta meta = {0};
	bool snapshot_bad = false;
	struct group *g;
	int rv = snapshot_manifest_read(s->snap_dir, id, &meta);

	if (rv == 0)
		rv = recover_restore(s, &meta);
	if (rv == 0) {
		boot.snapshot = (struct raft_snapshot_meta){meta.index, meta.term, meta.conf};
		boot.applied = meta.index;
	} else if (rv == -EBADMSG || (rv == -ENOENT && wg->mark_index > 0)) {
		snapshot_bad = rv == -EBADMSG;
	} else if (rv != -ENOENT) {
		return rv;
	}
	if (damaged_term > hard.term) {
		hard.term = damaged_term; /* A vote of that term may be lost: none. */
		hard.vote = RAFT_NONE;
	}
	if (hard.term < boot.snapshot.term)
		hard.term = boot.snapshot.term;
	recover_term(s, id, &hard);
	hard.commit = boot.snapshot.index;
	hard.repairing = true;
	boot.hard = (struct raft_hard_state){hard.term, hard.vote, hard.commit};
	rv = recover_append(s, id, RECOVER_RESET, NULL, boot.snapshot.index, boot.snapshot.term);
	if (rv == 0)
		rv = recover_append(s, id, RECOVER_HARD, &hard, 0, 0);
	if (rv == 0 && snapshot_bad) {
		rv = wal_sync(&s->wal);
		if (rv == 0)
			snapshot_remove_group(s->snap_dir, id);
	}
	if (rv == 0)
		rv = group_open(s, id, &boot, &g);
	if (rv != 0)
		return rv;
	g->repairing = true;
	g->snapshot_size = boot.snapshot.index ? meta.size : 0;
	log_group(&s->config.log, LOG_LEVEL_WARN, (int32_t)s->config.shard_index, id,
		  "%s%s; starting it from %s%llu as a non-voting, non-acknowledging member and "
		  "repairing it from the leader",
		  what,
		  snapshot_bad && strstr(what, "snapshot") == NULL
		      ? " (its snapshot fails verification too)"
		      : "",
		  boot.snapshot.index ? "its snapshot at index " : "nothing: index ",
		  (unsigned long long)boot.snapshot.index);
	return 0;
}

int recover_lost_group(struct shard *s, uint64_t id)
{
	struct raft_boot boot = {.repair = true, .repair_id = recover_repair_id(id)};
	struct wal_hard hard = {.repairing = true};
	struct group *g;
	int rv;

	recover_term(s, id, &hard);
	boot.hard = (struct raft_hard_state){hard.term, hard.vote, 0};
	rv = wal_append_reset(&s->wal, id, 0, 0);
	if (rv == 0)
		rv = wal_append_hard(&s->wal, id, &hard);
	if (rv == 0)
		rv = group_open(s, id, &boot, &g);
	if (rv != 0)
		return rv;
	g->repairing = true;
	log_group(&s->config.log, LOG_LEVEL_WARN, (int32_t)s->config.shard_index, id,
		  "the WAL lost a segment that may have held its records; starting it from nothing "
		  "as a non-voting, non-acknowledging member and repairing it from the leader");
	return 0;
}

static int recover_damaged_push(uint64_t id, uint64_t **damaged, uint32_t *count, uint32_t *cap)
{
	uint64_t *ids = array_grow(*damaged, cap, *count + 1, sizeof(*ids), 8);

	if (ids == NULL)
		return -ENOMEM;
	*damaged = ids;
	(*damaged)[(*count)++] = id;
	return 0;
}

/* Start one group from the WAL's state of it, or put it on the damaged list. */
static int recover_one(struct shard *s, const struct wal_group *wg, uint64_t **damaged,
		       uint32_t *damaged_count, uint32_t *damaged_cap)
{
	struct raft_boot boot = {0};
	struct wal_read rd = {0};
	struct raft_entry *entries = NULL;
	struct group *g;
	uint64_t next = wg->first_index, snapshot_size = 0;
	uint32_t count = 0, cap = 0;
	int rv = 0;

	if (wg->removed)
		return 0;
	if (wg->damaged)
		rv = WAL_ERR_CORRUPT;
	boot.hard = (struct raft_hard_state){wg->hard.term, wg->hard.vote, wg->hard.commit};
	boot.repair = wg->hard.repairing; /* A repair a restart interrupted goes on. */
	boot.repair_id = boot.repair ? recover_repair_id(wg->group) : 0;
	boot.snapshot.index = wg->mark_index;
	boot.snapshot.term = wg->mark_term;
	if (rv == 0)
		rv = recover_snapshot(s, wg, &boot, &next, &snapshot_size);
	/* The snapshot was installed past everything the WAL holds of the
	 * group, and the mark that would have said so was lost with an
	 * unsynced write: write it now, or the first entry after the snapshot
	 * would leave a gap in the WAL's indexes (nothing the WAL holds is
	 * after the snapshot, so the mark drops nothing that is not in it). */
	if (rv == 0 && boot.snapshot.index > wg->last_index)
		rv = recover_append(s, wg->group, RECOVER_MARK, NULL, boot.snapshot.index,
				    boot.snapshot.term);
	/* A snapshot that fails verification, or is gone, is damage too. */
	if (rv == -EBADMSG || rv == -ENOENT || rv == WAL_ERR_GAP || rv == WAL_ERR_CORRUPT)
		return recover_damaged_push(wg->group, damaged, damaged_count, damaged_cap);
	while (next <= wg->last_index && rv == 0) {
		/* 64 KiB at a time keeps one read's records (one I/O each) within the
		 * loop's queue. */
		rv = wal_read_sync(&s->wal, &rd, wg->group, next, wg->last_index, 64u << 10);
		if (rv == 0) {
			struct raft_entry *grown =
			    array_grow(entries, &cap, count + rd.entries_count, sizeof(*grown), 8);

			if (grown == NULL)
				rv = -ENOMEM;
			else
				entries = grown;
		}
		if (rv == 0) {
			for (uint32_t i = 0; i < rd.entries_count && rv == 0; i++) {
				const struct wal_entry *we = &rd.entries[i];
				void *copy = we->size ? malloc(we->size) : NULL;

				if (we->size > 0 && copy == NULL) {
					rv = -ENOMEM;
					break;
				}
				if (we->size)
					memcpy(copy, we->data, we->size);
				entries[count++] = (struct raft_entry){.term = we->term,
								       .index = next + i,
								       .type = we->type,
								       .size = we->size,
								       .data = copy};
			}
			next += rd.entries_count;
		}
		wal_read_release(&rd);
	}
	boot.entries = entries;
	boot.entries_count = count;
	if (rv == 0)
		rv = group_open(s, wg->group, &boot, &g);
	if (rv == 0)
		g->snapshot_size = snapshot_size; /* The snapshot policy's base. */
	if (rv == 0 && boot.repair) {
		g->repairing = true;
		log_group(&s->config.log, LOG_LEVEL_INFO, (int32_t)s->config.shard_index, wg->group,
			  "its repair from peers was interrupted; resuming it (no vote, no "
			  "acknowledgement that counts, until it holds the leader's log)");
	}
	for (uint32_t i = 0; i < count; i++)
		free((void *)entries[i].data);
	free(entries);
	if (rv == WAL_ERR_CORRUPT)
		return recover_damaged_push(wg->group, damaged, damaged_count, damaged_cap);
	return rv;
}

/* Rebuild every group the WAL knows, from its records. */
int recover_groups(struct shard *s, char *why, size_t why_size)
{
	const struct wal_group *wg = NULL;
	uint64_t *damaged = NULL;
	uint32_t damaged_count = 0, damaged_cap = 0;
	int rv = 0;

	while (rv == 0 && (wg = wal_group_next(&s->wal, wg)) != NULL) {
		rv = recover_one(s, wg, &damaged, &damaged_count, &damaged_cap);
		if (rv != 0)
			snprintf(why, why_size, "group %llu could not be recovered: %s",
				 (unsigned long long)wg->group, err_str(rv));
	}
	/* Damaged groups start last: their WAL records move the table. */
	for (uint32_t i = 0; i < damaged_count && rv == 0; i++) {
		const struct wal_group *d = wal_group_find(&s->wal, damaged[i]);
		char what[96];

		if (d->damaged && d->damaged_offset == 0 && wal_has_lost_segments(&s->wal))
			snprintf(what, sizeof(what),
				 "a WAL segment that may have held its records was lost "
				 "(damaged from index %llu)",
				 (unsigned long long)d->damaged_index);
		else if (d->damaged)
			snprintf(what, sizeof(what),
				 "WAL records damaged from index %llu (first at segment %llu "
				 "offset %llu)",
				 (unsigned long long)d->damaged_index,
				 (unsigned long long)d->damaged_seq,
				 (unsigned long long)d->damaged_offset);
		else
			snprintf(what, sizeof(what), "its snapshot fails verification");
		rv = recover_damaged(s, damaged[i], what);
		if (rv != 0)
			snprintf(why, why_size, "group %llu could not start its repair: %s",
				 (unsigned long long)damaged[i], err_str(rv));
	}
	free(damaged);
	return rv;
}
