/* Catch-up: streaming a snapshot file to a follower in chunks, receiving one
 * from a leader, and installing it once its SNAPSHOT message arrives. */
#include <errno.h>
#include <lz4.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/assert.h"
#include "base/err.h"
#include "shard/shard_internal.h"

/* Follower: restore the snapshot the engine installs, make it current. */
int catchup_install(struct shard *s, struct group *g, const struct raft_snapshot_meta *snap)
{
	struct snapshot_meta meta;
	int rv;

	/* catchup_accept() let no other through. */
	if (g->received == NULL || g->received->index != snap->index ||
	    g->received->term != snap->term)
		return -ENOENT;
	meta = *g->received;
	free(g->received); /* The engine hands each snapshot it installs out once. */
	g->received = NULL;
	meta.conf = snap->conf;
	if (group_is_witness(g)) {
		/* A witness keeps none of the state: its file is replaced by an
		 * empty one of the same index (the metadata is what it needs). */
		rv = snapshot_save(s->snap_dir, &meta, save_fill_none, NULL);
	} else {
		rv = s->config.sm.restore ? snapshot_restore(s->snap_dir, &meta,
							     s->config.sm.restore, s->config.sm.ctx)
					  : -ENOTSUP;
	}
	if (rv == 0)
		rv = save_manifest_write(s, &meta);
	if (rv == 0) {
		check_forget(g);
		g->snapshot_size = meta.size; /* What the snapshot policy measures from. */
		g->applied_bytes = 0;
		pending_props_skip(g, meta.index, meta.term);
		/* Reads waiting for an index the snapshot covers are served by it:
		 * no entry up to there will be applied one by one any more. */
		pending_reads_settle(g, meta.index);
		stat_add(&s->stats.snapshots_received, 1);
		log_limit_group(&s->log_limit, s->now_ms, SHARD_LOG_INSTALLED, LOG_LEVEL_INFO,
				g->id, "installed snapshot %llu (%llu bytes)",
				(unsigned long long)meta.index, (unsigned long long)meta.size);
	}
	if (rv == 0 && g->rebuilding) {
		/* The state is the leader's now: whatever a check found is gone. */
		log_group(&s->config.log, LOG_LEVEL_INFO, (int32_t)s->config.shard_index, g->id,
			  "rebuilt from the leader's snapshot at %llu",
			  (unsigned long long)snap->index);
		g->rebuilding = false;
		g->diverged = false;
		g->replay_until = g->applied_max;
		pending_answer(g->rebuild_cb, g->rebuild_arg, 0, snap->index,
			       raft_leader(&g->raft));
	}
	return rv;
}

static struct transfer *transfer_find(struct shard *s, uint64_t group, uint64_t peer)
{
	for (int i = 0; i < SHARD_TRANSFERS_MAX; i++)
		if (s->transfers[i].used && s->transfers[i].group == group &&
		    s->transfers[i].peer == peer)
			return &s->transfers[i];
	return NULL;
}

/* Leader: instead of the bare SNAPSHOT message, stream its file first. */
void catchup_start(struct shard *s, const struct raft_msg *m)
{
	struct group *g = table_find(s, m->group);
	struct transfer *t = NULL;
	struct snapshot_meta file;

	if (m->snapshot == NULL || transfer_find(s, m->group, m->to) != NULL)
		return;
	for (int i = 0; i < SHARD_TRANSFERS_MAX && t == NULL; i++)
		if (!s->transfers[i].used)
			t = &s->transfers[i];
	if (t == NULL || snapshot_manifest_read(s->snap_dir, m->group, &file) != 0 ||
	    file.index != m->snapshot->index) {
		/* Busy, or not on disk. The engine is told after this turn's readies
		 * (not now: the ready is still borrowed), so that it probes again at
		 * the next heartbeat rather than after its snapshot timeout. */
		if (s->refused_count < SHARD_REFUSED_MAX)
			s->refused[s->refused_count++] = (struct snapshot_refused){m->group, m->to};
		return;
	}
	*t = (struct transfer){.used = true,
			       .group = m->group,
			       .peer = m->to,
			       .file = file,
			       .meta = *m->snapshot,
			       .msg = *m,
			       .started_ms = s->now_ms};
	t->msg.snapshot = &t->meta;
	if (g != NULL && group_conf_is_witness(raft_conf(&g->raft), m->to))
		t->msg.flags |= RAFT_MSG_FLAG_METADATA; /* It keeps none of the bytes. */
	t->fd = snapshot_open(s->snap_dir, m->group, file.index);
	if (t->fd < 0)
		t->used = false;
}

static void transfer_end(struct shard *s, struct transfer *t, bool ok)
{
	struct group *g = table_find(s, t->group);

	close(t->fd);
	t->used = false;
	if (g) {
		raft_snapshot_sent(&g->raft, t->peer, ok, s->now_ms);
		table_dirty(s, g);
	}
	if (ok) {
		stat_add(&s->stats.snapshots_sent, 1);
		log_limit_group(
		    &s->log_limit, s->now_ms, SHARD_LOG_SENT, LOG_LEVEL_INFO, t->group,
		    "snapshot %llu queued to node %llu: %llu bytes, %llu on the wire, in %llu ms",
		    (unsigned long long)t->file.index, (unsigned long long)t->peer,
		    (unsigned long long)t->file.size, (unsigned long long)t->wire_bytes,
		    (unsigned long long)(s->now_ms - t->started_ms));
	}
}

/* Queue the next chunk of t to p: read from the file, LZ4-compressed when
 * configured and when that makes it smaller. Returns 0, -ENOMEM (try at a
 * later turn) or -EIO (the file cannot be read: the transfer ends). */
static int transfer_chunk(struct shard *s, struct transfer *t, struct peer *p)
{
	bool compress = s->config.snapshot_compress;
	uint32_t len =
	    (uint32_t)(t->file.size - t->offset < SHARD_CHUNK_SIZE ? t->file.size - t->offset
								   : SHARD_CHUNK_SIZE);
	uint32_t bound = compress ? (uint32_t)LZ4_compressBound((int)len) : len;
	struct wire_chunk chunk = {t->group,     t->file.index,    t->file.term, t->offset,
				   t->file.size, t->file.checksum, len,          0};
	uint32_t wire_len = len;
	uint8_t *at, *data, *raw;

	ASSERT(t->offset < t->file.size); /* A chunk is only sent while some is left. */
	peer_frame_close(p);              /* Before reserving: sealing may append a tag. */
	if (buf_reserve(&p->out, WIRE_FRAME_HEADER_SIZE + WIRE_CHUNK_HEADER_SIZE +
				     (bound > len ? bound : len) + SHARD_FRAME_TAG_ROOM) != 0)
		return -ENOMEM;
	if (compress && s->chunk_buf == NULL && (s->chunk_buf = malloc(SHARD_CHUNK_SIZE)) == NULL)
		return -ENOMEM;
	at = p->out.data + p->out.len;
	data = at + WIRE_FRAME_HEADER_SIZE + WIRE_CHUNK_HEADER_SIZE;
	raw = compress ? s->chunk_buf : data;
	if (pread(t->fd, raw, len, (off_t)t->offset) != (ssize_t)len)
		return -EIO;
#ifdef FLOTILLA_TEST_HOOKS
	if (s->fault_corrupt && len > 0) {
		/* Before the frame checksum: only the file's checksum can catch
		 * it, at the receiver. */
		raw[len / 2] ^= 0x40;
		s->fault_corrupt = false;
		log_shard(&s->config.log, LOG_LEVEL_WARN, s->config.shard_index,
			  "test fault: corrupted a chunk of group %llu",
			  (unsigned long long)t->group);
	}
#endif
	if (compress) {
		int n = LZ4_compress_default((const char *)raw, (char *)data, (int)len, (int)bound);

		if (n > 0 && (uint32_t)n < len)
			chunk.packed_len = wire_len = (uint32_t)n;
		else
			memcpy(data, raw, len);
	}
	wire_chunk_encode(&chunk, at + WIRE_FRAME_HEADER_SIZE);
	p->out.len += WIRE_FRAME_HEADER_SIZE + WIRE_CHUNK_HEADER_SIZE + wire_len;
	peer_frame_seal(p, (size_t)(at - p->out.data), WIRE_FRAME_SNAPSHOT);
	t->offset += len;
	ASSERT(t->offset <= t->file.size);
	t->wire_bytes += wire_len;
#ifdef FLOTILLA_TEST_HOOKS
	if (s->fault_pace_ms > 0)
		t->next_ms = s->now_ms + s->fault_pace_ms;
#endif
	return 0;
}

/* Send the next chunks of every transfer, a window's worth per peer, so a
 * snapshot neither floods the link nor starves other groups' traffic. */
void catchup_pump(struct shard *s)
{
	for (uint32_t i = 0; i < s->refused_count; i++) {
		struct group *g = table_find(s, s->refused[i].group);

		if (g) {
			raft_snapshot_sent(&g->raft, s->refused[i].peer, false, s->now_ms);
			table_dirty(s, g);
		}
	}
	s->refused_count = 0;
	for (int i = 0; i < SHARD_TRANSFERS_MAX; i++) {
		struct transfer *t = &s->transfers[i];
		struct peer *p = t->used ? peer_find(s, t->peer) : NULL;

		if (!t->used)
			continue;
		if (p == NULL || p->state != PEER_UP || table_find(s, t->group) == NULL) {
			transfer_end(s, t, false);
			continue;
		}
		while (t->offset < t->file.size && s->now_ms >= t->next_ms &&
		       p->out.len + p->flight.len < SHARD_SNAP_QUEUE_MAX) {
			int rv = transfer_chunk(s, t, p);

			if (rv == -EIO)
				transfer_end(s, t, false);
			if (rv != 0)
				break;
		}
		if (t->used && t->offset == t->file.size) {
			peer_queue(s, p, &t->msg); /* After the last chunk, on the same stream. */
			transfer_end(s, t, true);
		}
	}
}

static struct snapshot_recv *recv_find(struct shard *s, uint64_t group, uint64_t index,
				       uint64_t peer, int *slot)
{
	for (int i = 0; i < SHARD_RECVS_MAX; i++) {
		struct snapshot_recv *r = &s->recvs[i];

		if (s->recvs_used[i] && r->group == group && r->index == index && r->peer == peer) {
			*slot = i;
			return r;
		}
	}
	return NULL;
}

/* A chunk of a snapshot file from peer. Returns 0, or -EPROTO to close the
 * connection. Anything unexpected only drops the partial file. */
int catchup_chunk(struct shard *s, uint64_t peer, const uint8_t *body, size_t size)
{
	struct wire_chunk c;
	struct snapshot_recv *r;
	const uint8_t *data;
	struct group *g;
	int slot = -1;

	if (wire_chunk_decode(&c, body, size) != 0)
		return -EPROTO;
	g = table_find(s, c.group);
	if (g == NULL)
		return 0;
	/* A snapshot holds only committed entries: until it is installed, this
	 * replica knows it is behind that far (stale reads: shard/stale.c). */
	if (peer == raft_leader(&g->raft))
		raft_note_committed(&g->raft, c.index);
	r = recv_find(s, c.group, c.index, peer, &slot);
	if (r != NULL && (c.offset != r->received || c.size != r->size)) {
		snapshot_recv_abort(s->snap_dir, r); /* A new attempt, or a gap. */
		s->recvs_used[slot] = false;
		r = NULL;
	}
	if (r == NULL) {
		int oldest = 0;

		if (c.offset != 0 || s->space_low)
			return 0; /* Not the start; or no room for the file. */
		/* A new attempt supersedes any partial file of the group, from
		 * whichever sender (a leader that died mid-stream): they would
		 * share a name otherwise. */
		for (int i = 0; i < SHARD_RECVS_MAX; i++)
			if (s->recvs_used[i] && s->recvs[i].group == c.group) {
				snapshot_recv_abort(s->snap_dir, &s->recvs[i]);
				s->recvs_used[i] = false;
			}
		for (int i = 0; i < SHARD_RECVS_MAX && slot < 0; i++) {
			if (!s->recvs_used[i])
				slot = i;
			else if (s->recvs[i].last_ms < s->recvs[oldest].last_ms)
				oldest = i;
		}
		if (slot < 0 && s->now_ms - s->recvs[oldest].last_ms > SHARD_RECV_IDLE_MS) {
			/* A transfer whose sender went away: its slot is needed. */
			snapshot_recv_abort(s->snap_dir, &s->recvs[oldest]);
			s->recvs_used[oldest] = false;
			slot = oldest;
		}
		if (slot < 0)
			return 0; /* Too many at once: the leader retries. */
		r = &s->recvs[slot];
		*r = (struct snapshot_recv){.group = c.group,
					    .index = c.index,
					    .term = c.term,
					    .size = c.size,
					    .checksum = c.checksum,
					    .peer = peer,
					    .started_ms = s->now_ms,
					    .fd = -1};
		if (snapshot_recv_begin(s->snap_dir, r) != 0)
			return 0;
		s->recvs_used[slot] = true;
	}
	r->last_ms = s->now_ms;
	data = body + WIRE_CHUNK_HEADER_SIZE;
	if (c.packed_len != 0) {
		/* Unpacked into at most a chunk; anything else drops the file. */
		if (c.len > SHARD_CHUNK_SIZE ||
		    (s->chunk_buf == NULL && (s->chunk_buf = malloc(SHARD_CHUNK_SIZE)) == NULL) ||
		    LZ4_decompress_safe((const char *)data, (char *)s->chunk_buf, (int)c.packed_len,
					(int)c.len) != (int)c.len) {
			snapshot_recv_abort(s->snap_dir, r);
			s->recvs_used[slot] = false;
			return 0;
		}
		data = s->chunk_buf;
	}
	if (snapshot_recv_write(r, data, c.len) != 0) {
		snapshot_recv_abort(s->snap_dir, r);
		s->recvs_used[slot] = false;
	}
	return 0;
}

/* A SNAPSHOT message may reach the engine only if the engine will not need
 * its file, or the file arrived whole and verified. */
bool catchup_accept(struct shard *s, struct group *g, uint64_t peer, const struct raft_msg *m)
{
	const struct raft_snapshot_meta *snap = m->snapshot;
	struct snapshot_recv *r;
	int slot;

	if (snap == NULL)
		return false;
	if (!raft_is_snapshot_wanted(&g->raft) &&
	    (snap->index <= raft_commit_index(&g->raft) ||
	     raft_term_at(&g->raft, snap->index) == snap->term))
		return true; /* Nothing to install: the engine only answers. */
	r = recv_find(s, g->id, snap->index, peer, &slot);
	if (r == NULL || r->term != snap->term)
		return false;
	/* Room for what catchup_install() needs, taken only while a snapshot
	 * is on its way in; without it the file stays, and the leader's next
	 * SNAPSHOT message finds it. */
	if (g->received == NULL && (g->received = malloc(sizeof(*g->received))) == NULL)
		return false;
	s->recvs_used[slot] = false;
	if (snapshot_recv_finish(s->snap_dir, r) != 0) {
		snapshot_recv_abort(s->snap_dir, r); /* Idempotent: finish may have closed it. */
		log_group(&s->config.log, LOG_LEVEL_WARN, (int32_t)s->config.shard_index, g->id,
			  "snapshot %llu from node %llu %s", (unsigned long long)snap->index,
			  (unsigned long long)peer, "is incomplete or fails its checksum");
		return false;
	}
	log_limit_group(&s->log_limit, s->now_ms, SHARD_LOG_RECEIVED, LOG_LEVEL_INFO, g->id,
			"snapshot %llu received from node %llu: %llu bytes in %llu ms",
			(unsigned long long)r->index, (unsigned long long)peer,
			(unsigned long long)r->size,
			(unsigned long long)(s->now_ms - r->started_ms));
	*g->received = (struct snapshot_meta){.group = g->id,
					      .index = r->index,
					      .term = r->term,
					      .size = r->size,
					      .checksum = r->checksum};
	return true;
}
