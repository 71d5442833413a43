/* The public API of include/flotilla.h: a node is its shards plus the net
 * thread. Requests are routed to the shard that owns the group (xxh3 of the
 * group id modulo the shard count, the same on every node) and answered
 * through callbacks that run on that shard's thread. */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "base/err.h"
#include "engine/raft.h"
#include "flotilla.h"
#include "io/wal.h"
#include "shard/config.h"
#include "shard/datadir.h"
#include "shard/net.h"
#include "shard/node_internal.h"
#include "shard/shard.h"
#include "shard/snapshot.h"
#include "shard/tls.h"

void fl_node_config_default(struct fl_node_config *config, uint64_t node_id)
{
	*config = (struct fl_node_config){
	    .node_id = node_id,
	    .cluster_id = 1,
	    .data_dir = NULL,
	    .listen_addr = "127.0.0.1:0",
	    .shards_count = 0,
	    .tick_ms = 10,
	    .election_timeout_ms = 1000,
	    .heartbeat_interval_ms = 100,
	    .entry_size_max = 1u << 20,
	    .inbox_max = 65536,
	    .quiesce = true,
	    .lease_read = false,
	    .snapshot_entries = 10000,
	    .snapshot_ratio_percent = 50,
	    .check_entries = 10000,
	    .groups_max = 100000,
	    .log_level = FL_LOG_INFO,
	    .log_format = FL_LOG_TEXT,
	};
}

/* The logger's sink when the embedder set log_cb: arg is the node's config. */
static void node_log_sink(void *arg, const struct log_record *rec)
{
	const struct fl_node_config *config = arg;
	struct fl_log_record r = {.level = rec->level,
				  .node_id = rec->node_id,
				  .shard = rec->shard,
				  .group = rec->group,
				  .time_ns = rec->time_ns,
				  .msg = rec->msg};

	config->log_cb(config->log_arg, &r);
}

/* Where config's lines go; valid while config is. */
static struct logger node_logger(const struct fl_node_config *config)
{
	return (struct logger){.node_id = config->node_id,
			       .level_min = config->log_level,
			       .format = config->log_format,
			       .sink = config->log_cb ? node_log_sink : NULL,
			       .sink_arg = (void *)config};
}

struct logger node_logger_of(const struct fl_node *node)
{
	return node_logger(&node->config);
}

static_assert((int)FL_LOG_ERROR == (int)LOG_LEVEL_ERROR &&
		  (int)FL_LOG_DEBUG == (int)LOG_LEVEL_DEBUG,
	      "the public levels are base/log.h's");
static_assert((int)FL_LOG_JSON == (int)LOG_FORMAT_JSON &&
		  (int)FL_LOG_LOGFMT == (int)LOG_FORMAT_LOGFMT,
	      "the public formats are base/log.h's");

static uint32_t node_shard_of(const struct fl_node *node, uint64_t group)
{
	return (uint32_t)(XXH3_64bits(&group, sizeof(group)) % node->shards_count);
}

static void node_free(struct fl_node *node)
{
	if (node->tls != NULL)
		tls_deinit(node->tls);
	free(node->tls);
	free(node->shards);
	free(node->peer_ids);
	free(node->net_peers);
	free(node->book);
	pthread_mutex_destroy(&node->book_lock);
	free(node);
}

/* Load the TLS files named by the configuration, if any. Returns 0,
 * -EINVAL (not all three named) or ERR_TLS, with a log line saying why. */
static int node_tls_open(struct fl_node *node, const struct logger *lg)
{
	const struct fl_node_config *c = &node->config;
	char why[TLS_WHY_SIZE + 3 * TLS_PATH_SIZE];
	int rv;

	if (c->tls_ca_file == NULL && c->tls_cert_file == NULL && c->tls_key_file == NULL)
		return 0;
	if (c->tls_ca_file == NULL || c->tls_cert_file == NULL || c->tls_key_file == NULL) {
		log_at(lg, LOG_LEVEL_ERROR,
		       "cannot start: bad configuration: tls_ca_file, tls_cert_file and "
		       "tls_key_file go together (all three, or none for plaintext)");
		return -EINVAL;
	}
	node->tls = calloc(1, sizeof(*node->tls));
	if (node->tls == NULL)
		return -ENOMEM;
	rv = tls_init(node->tls, c->tls_ca_file, c->tls_cert_file, c->tls_key_file, c->node_id, why,
		      sizeof(why));
	if (rv != 0) {
		log_at(lg, LOG_LEVEL_ERROR, "cannot start: TLS: %s", why);
		free(node->tls);
		node->tls = NULL;
	}
	return rv;
}

int fl_node_tls_reload(struct fl_node *node)
{
	struct logger lg = node_logger(&node->config);
	char what[TLS_WHY_SIZE + 4 * TLS_PATH_SIZE];
	int rv;

	if (node->tls == NULL) {
		log_at(&lg, LOG_LEVEL_WARN,
		       "TLS reload: TLS is off on this node; nothing to reload");
		return -EINVAL;
	}
	rv = tls_reload(node->tls, what, sizeof(what));
	log_at(&lg, rv == 0 ? LOG_LEVEL_INFO : LOG_LEVEL_ERROR, "TLS reload: %s", what);
	return rv;
}

/* A shard's dial callback: the net thread dials for it. */
static void node_dial(void *arg, uint64_t node, uint32_t shard_index, uint64_t peer)
{
	(void)node;
	node_net_dial(arg, shard_index, peer);
}

int fl_node_start(const struct fl_node_config *config, struct fl_node **out)
{
	struct fl_node *node;
	struct node_net_config nc;
	char why[1024] = "";
	int rv = config_check(config, why, sizeof(why));
	struct logger lg = node_logger(config); /* Until node->config is set. */
	uint32_t started = 0;
	int peers_count;

	if (rv != 0) {
		if (config->log_level > FL_LOG_DEBUG || config->log_format > FL_LOG_JSON)
			lg = (struct logger){.node_id = config->node_id};
		log_at(&lg, LOG_LEVEL_ERROR, "cannot start: bad configuration: %s", why);
		return rv;
	}
	node = calloc(1, sizeof(*node));
	if (node == NULL)
		return -ENOMEM;
	node->config = *config;
	node->shards_count =
	    config->shards_count ? config->shards_count : (uint32_t)sysconf(_SC_NPROCESSORS_ONLN);
	node->shards = calloc(node->shards_count, sizeof(*node->shards));
	node->peer_ids = calloc(FL_PEERS_MAX, sizeof(*node->peer_ids));
	node->net_peers = calloc(FL_PEERS_MAX, sizeof(*node->net_peers));
	node->book = calloc(1, sizeof(*node->book));
	pthread_mutex_init(&node->book_lock, NULL);
	if (!node->shards || !node->peer_ids || !node->net_peers || !node->book) {
		node_free(node);
		return -ENOMEM;
	}
	rv = node_tls_open(node, &lg);
	if (rv != 0) {
		node_free(node);
		return rv;
	}
	if (mkdir(config->data_dir, 0755) != 0 && errno != EEXIST) {
		rv = -errno;
		log_at(&lg, LOG_LEVEL_ERROR, "cannot create %s: %s", config->data_dir,
		       strerror(errno));
		node_free(node);
		return rv;
	}
	rv = datadir_open(&node->datadir, config->data_dir,
			  &(struct datadir_expect){.cluster_id = config->cluster_id,
						   .node_id = config->node_id,
						   .shards_count = node->shards_count,
						   .log = &lg},
			  why, sizeof(why));
	if (rv != 0) {
		log_at(&lg, LOG_LEVEL_ERROR, "cannot start: %s", why);
		node_free(node);
		return rv;
	}
	peers_count = node_book_open(node, why, sizeof(why));
	if (peers_count < 0) {
		rv = peers_count;
		log_at(&lg, LOG_LEVEL_ERROR, "cannot start: %s", why);
		datadir_close(&node->datadir);
		node_free(node);
		return rv;
	}
	nc = (struct node_net_config){.auth = config->auth_key != NULL && node->tls == NULL,
				      .tls = node->tls,
				      .handshake_timeout_ms = config->peer_handshake_timeout_ms,
				      .node_id = config->node_id,
				      .log = node_logger(&node->config),
				      .cluster_id = config->cluster_id,
				      .incarnation = node->datadir.manifest.incarnation,
				      .shards_count = node->shards_count,
				      .listen_addr = config->listen_addr,
				      .client_addr = config->client_addr,
				      .peers = node->net_peers,
				      .peers_count = (uint32_t)peers_count};
	/* Any secret of 16 bytes or more becomes a crypto_auth key. */
	if (nc.auth && (sodium_init() < 0 ||
			crypto_generichash(nc.auth_key, sizeof(nc.auth_key), config->auth_key,
					   config->auth_key_size, NULL, 0) != 0)) {
		node_free(node);
		return -EINVAL;
	}
	if (node->tls != NULL && config->auth_key != NULL)
		log_at(&lg, LOG_LEVEL_WARN,
		       "auth_key is unused: TLS authenticates peers and seals their frames");
	if (config->sm.freeze != NULL) {
		rv = snapshot_worker_start(&node->snapshots);
		if (rv != 0) {
			snprintf(why, sizeof(why), "cannot start the snapshot thread");
			goto err;
		}
	}
	rv = node_net_start(&node->net, &nc, node->shards, why, sizeof(why));
	if (rv != 0)
		goto err;
	for (; started < node->shards_count; started++) {
		struct shard_config sc = {
		    .node_id = config->node_id,
		    .log = node_logger(&node->config),
		    .cluster_id = config->cluster_id,
		    .shard_index = started,
		    .shards_count = node->shards_count,
		    .tick_ms = config->tick_ms,
		    .election_timeout_ms = config->election_timeout_ms,
		    .heartbeat_interval_ms = config->heartbeat_interval_ms,
		    .entry_size_max = config->entry_size_max,
		    .inbox_max = config->inbox_max ? config->inbox_max : 65536,
		    .wal_segment_size = config->wal_segment_size,
		    .quiesce = config->quiesce,
		    .lease_read = config->lease_read,
		    .snapshot_entries = config->snapshot_entries,
		    .check_entries = config->check_entries,
		    .snapshot_bytes = config->snapshot_bytes,
		    .snapshot_ratio_percent = config->snapshot_ratio_percent,
		    .snapshot_compress = config->snapshot_compress,
		    .snapshots = node->snapshots,
		    .sm = config->sm,
		    .groups_hosted = &node->groups_hosted,
		    .groups_max = config->groups_max,
		    .peers = node->peer_ids,
		    .peers_count = (uint32_t)peers_count,
		    .dial = node_dial,
		    .dial_arg = node->net,
		};

		snprintf(sc.wal_dir, sizeof(sc.wal_dir), "%s/shard-%u", config->data_dir, started);
		rv = shard_start(&node->shards[started], &sc, why, sizeof(why));
		if (rv != 0)
			goto err_after_shards;
	}
	node_net_ready(node->net);
	log_at(&lg, LOG_LEVEL_INFO,
	       "started: %u shards, peers on port %u%s, data directory %s "
	       "(incarnation %016llx)",
	       node->shards_count, node_net_port(node->net),
	       node->tls != NULL          ? " (mutual TLS 1.3: peers authenticated, frames sealed)"
	       : config->auth_key != NULL ? " (shared key: peers and frames authenticated)"
					  : " (no TLS, no shared key: peers unauthenticated)",
	       config->data_dir, (unsigned long long)node->datadir.manifest.incarnation);
	*out = node;
	return 0;
err_after_shards:
	/* Shards first (they dial through the net thread), then the net thread
	 * (it hands connections to shards), then free the shards. */
	for (uint32_t i = 0; i < started; i++)
		shard_stop(node->shards[i]);
	node_net_stop(node->net);
	snapshot_worker_stop(node->snapshots);
	node->snapshots = NULL;
	while (started-- > 0)
		shard_close(node->shards[started]);
err:
	snapshot_worker_stop(node->snapshots);
	datadir_close(&node->datadir);
	log_at(&lg, LOG_LEVEL_ERROR, "cannot start: %s (%s)", why, err_str(rv));
	node_free(node);
	return rv;
}

void fl_node_stop(struct fl_node *node)
{
	struct logger lg = node_logger(&node->config);

	/* The order of err_after_shards in fl_node_start(), for the same reason. */
	for (uint32_t i = 0; i < node->shards_count; i++)
		shard_stop(node->shards[i]);
	node_net_stop(node->net);
	/* Then the snapshot thread: it hands written views to the shards,
	 * which commit them in shard_close(). */
	snapshot_worker_stop(node->snapshots);
	for (uint32_t i = 0; i < node->shards_count; i++)
		shard_close(node->shards[i]);
	/* Last: the directory is free for the next process once nothing of
	 * ours writes to it. */
	datadir_close(&node->datadir);
	log_at(&lg, LOG_LEVEL_INFO, "stopped");
	node_free(node);
}

uint16_t fl_node_port(const struct fl_node *node)
{
	return node_net_port(node->net);
}

static struct shard_req *req_new(uint32_t type, uint64_t group, size_t extra, fl_done_cb cb,
				 void *arg)
{
	struct shard_req *req = malloc(sizeof(*req) + extra);

	if (req == NULL)
		return NULL;
	memset(req, 0, sizeof(*req));
	req->type = type;
	req->group = group;
	req->fd = -1;
	req->cb = cb;
	req->arg = arg;
	return req;
}

static int req_submit(struct fl_node *node, struct shard_req *req)
{
	int rv = shard_submit(node->shards[node_shard_of(node, req->group)], req);

	if (rv != 0)
		free(req);
	return rv;
}

int fl_group_create(struct fl_node *node, uint64_t group, const uint64_t *members,
		    uint32_t members_count, fl_done_cb cb, void *arg)
{
	struct shard_req *req;

	if (members_count == 0 || members_count > FL_MEMBERS_MAX)
		return FL_ERR_CONF_INVALID;
	req = req_new(SHARD_REQ_GROUP_CREATE, group, members_count * sizeof(uint64_t), cb, arg);
	if (req == NULL)
		return -ENOMEM;
	memcpy(req->data, members, members_count * sizeof(uint64_t));
	req->size = members_count;
	return req_submit(node, req);
}

static int simple_req(struct fl_node *node, uint32_t type, uint64_t group, uint64_t member,
		      uint32_t change, fl_done_cb cb, void *arg)
{
	struct shard_req *req = req_new(type, group, 0, cb, arg);

	if (req == NULL)
		return -ENOMEM;
	req->member = member;
	req->change = change;
	return req_submit(node, req);
}

int fl_group_join(struct fl_node *node, uint64_t group, fl_done_cb cb, void *arg)
{
	return simple_req(node, SHARD_REQ_GROUP_JOIN, group, 0, 0, cb, arg);
}

int fl_group_remove(struct fl_node *node, uint64_t group, fl_done_cb cb, void *arg)
{
	return simple_req(node, SHARD_REQ_GROUP_REMOVE, group, 0, 0, cb, arg);
}

int fl_group_check(struct fl_node *node, uint64_t group, fl_done_cb cb, void *arg)
{
	return simple_req(node, SHARD_REQ_CHECK, group, 0, 0, cb, arg);
}

int fl_group_rebuild(struct fl_node *node, uint64_t group, fl_done_cb cb, void *arg)
{
	return simple_req(node, SHARD_REQ_REBUILD, group, 0, 0, cb, arg);
}

int fl_group_snapshot(struct fl_node *node, uint64_t group, fl_done_cb cb, void *arg)
{
	return simple_req(node, SHARD_REQ_SNAPSHOT, group, 0, 0, cb, arg);
}

int fl_propose(struct fl_node *node, uint64_t group, const void *data, uint32_t size, fl_done_cb cb,
	       void *arg)
{
	struct shard_req *req;

	if (size > node->config.entry_size_max)
		return -EMSGSIZE;
	req = req_new(SHARD_REQ_PROPOSE, group, size, cb, arg);
	if (req == NULL)
		return -ENOMEM;
	memcpy(req->data, data, size);
	req->size = size;
	return req_submit(node, req);
}

int fl_propose_batch(struct fl_node *node, uint64_t group, const struct fl_proposal *entries,
		     uint32_t count, fl_done_cb cb)
{
	size_t bytes = (size_t)count * sizeof(struct shard_prop_item);
	struct shard_prop_item *items;
	struct shard_req *req;

	if (count == 0)
		return -EINVAL;
	for (uint32_t i = 0; i < count; i++) {
		if (entries[i].size > node->config.entry_size_max)
			return -EMSGSIZE;
		bytes += entries[i].size;
	}
	if (bytes > UINT32_MAX)
		return -EMSGSIZE;
	req = req_new(SHARD_REQ_PROPOSE_BATCH, group, bytes, cb, NULL);
	if (req == NULL)
		return -ENOMEM;
	items = (struct shard_prop_item *)req->data;
	bytes = (size_t)count * sizeof(*items);
	for (uint32_t i = 0; i < count; i++) {
		items[i] = (struct shard_prop_item){
		    .size = entries[i].size, .offset = (uint32_t)bytes, .arg = entries[i].arg};
		memcpy(req->data + bytes, entries[i].data, entries[i].size);
		bytes += entries[i].size;
	}
	req->size = count;
	return req_submit(node, req);
}

int fl_read(struct fl_node *node, uint64_t group, fl_done_cb cb, void *arg)
{
	return simple_req(node, SHARD_REQ_READ, group, 0, 0, cb, arg);
}

int fl_read_stale(struct fl_node *node, uint64_t group, struct fl_stale_read *read, fl_done_cb cb,
		  void *arg)
{
	struct shard_req *req = req_new(SHARD_REQ_READ_STALE, group, sizeof(read), cb, arg);

	if (req == NULL)
		return -ENOMEM;
	memcpy(req->data, &read, sizeof(read));
	return req_submit(node, req);
}

int fl_transfer(struct fl_node *node, uint64_t group, uint64_t target, fl_done_cb cb, void *arg)
{
	return simple_req(node, SHARD_REQ_TRANSFER, group, target, 0, cb, arg);
}

int fl_add_voter(struct fl_node *node, uint64_t group, uint64_t member, fl_done_cb cb, void *arg)
{
	return simple_req(node, SHARD_REQ_CHANGE, group, member, SHARD_CHANGE_ADD_VOTER, cb, arg);
}

int fl_add_learner(struct fl_node *node, uint64_t group, uint64_t member, fl_done_cb cb, void *arg)
{
	return simple_req(node, SHARD_REQ_CHANGE, group, member, SHARD_CHANGE_ADD_LEARNER, cb, arg);
}

int fl_add_witness(struct fl_node *node, uint64_t group, uint64_t member, fl_done_cb cb, void *arg)
{
	return simple_req(node, SHARD_REQ_CHANGE, group, member, SHARD_CHANGE_ADD_WITNESS, cb, arg);
}

int fl_promote(struct fl_node *node, uint64_t group, uint64_t member, fl_done_cb cb, void *arg)
{
	return simple_req(node, SHARD_REQ_CHANGE, group, member, SHARD_CHANGE_PROMOTE, cb, arg);
}

int fl_remove_member(struct fl_node *node, uint64_t group, uint64_t member, fl_done_cb cb,
		     void *arg)
{
	return simple_req(node, SHARD_REQ_CHANGE, group, member, SHARD_CHANGE_REMOVE, cb, arg);
}

int fl_group_recover(struct fl_node *node, uint64_t group, uint32_t flags,
		     struct fl_recover_report *report, fl_done_cb cb, void *arg)
{
	struct shard_req *req = req_new(SHARD_REQ_RECOVER, group, sizeof(report), cb, arg);

	if (req == NULL)
		return -ENOMEM;
	req->change = flags;
	memcpy(req->data, &report, sizeof(report));
	return req_submit(node, req);
}

int fl_group_info(struct fl_node *node, uint64_t group, struct fl_group_info *info, fl_done_cb cb,
		  void *arg)
{
	struct shard_req *req = req_new(SHARD_REQ_INFO, group, sizeof(info), cb, arg);

	if (req == NULL)
		return -ENOMEM;
	memcpy(req->data, &info, sizeof(info));
	return req_submit(node, req);
}

/* A caller thread waiting for one callback. */
struct waiter;
static void waiter_init(struct waiter *w);
static void waiter_done(void *arg, int rv, uint64_t result, uint64_t leader);
static int waiter_wait(struct waiter *w, int submitted, uint64_t *result, uint64_t *leader);

struct waiter {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	int rv;
	uint64_t result, leader;
};

static void waiter_done(void *arg, int rv, uint64_t result, uint64_t leader)
{
	struct waiter *w = arg;

	pthread_mutex_lock(&w->lock);
	w->done = true;
	w->rv = rv;
	w->result = result;
	w->leader = leader;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

static void waiter_init(struct waiter *w)
{
	*w = (struct waiter){0};
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
}

static int waiter_wait(struct waiter *w, int submitted, uint64_t *result, uint64_t *leader)
{
	if (submitted == 0) {
		pthread_mutex_lock(&w->lock);
		while (!w->done)
			pthread_cond_wait(&w->cond, &w->lock);
		pthread_mutex_unlock(&w->lock);
	} else {
		w->rv = submitted;
	}
	if (result)
		*result = w->result;
	if (leader)
		*leader = w->leader;
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
	return w->rv;
}

int fl_propose_sync(struct fl_node *node, uint64_t group, const void *data, uint32_t size,
		    uint64_t *result, uint64_t *leader)
{
	struct waiter w;

	waiter_init(&w);
	return waiter_wait(&w, fl_propose(node, group, data, size, waiter_done, &w), result,
			   leader);
}

int fl_read_sync(struct fl_node *node, uint64_t group, uint64_t *leader)
{
	struct waiter w;

	waiter_init(&w);
	return waiter_wait(&w, fl_read(node, group, waiter_done, &w), NULL, leader);
}

int fl_read_stale_sync(struct fl_node *node, uint64_t group, struct fl_stale_read *read)
{
	struct waiter w;

	waiter_init(&w);
	return waiter_wait(&w, fl_read_stale(node, group, read, waiter_done, &w), NULL, NULL);
}

int fl_group_list(struct fl_node *node, uint64_t *groups, uint32_t max, uint32_t *count)
{
	uint32_t total = 0;

	for (uint32_t i = 0; i < node->shards_count; i++) {
		struct shard_req *req =
		    req_new(SHARD_REQ_LIST, 0, sizeof(struct shard_list), NULL, NULL);
		struct shard_list *list;
		struct waiter w;
		int rv;

		if (req == NULL)
			return -ENOMEM;
		list = (struct shard_list *)req->data;
		*list = (struct shard_list){.groups = groups + (total < max ? total : max),
					    .max = total < max ? max - total : 0};
		waiter_init(&w);
		req->cb = waiter_done;
		req->arg = &w;
		rv = shard_submit(node->shards[i], req);
		if (rv != 0)
			free(req); /* Otherwise the shard frees it: the count comes as result. */
		rv = waiter_wait(&w, rv, NULL, NULL);
		if (rv != 0)
			return rv;
		total += (uint32_t)w.result;
	}
	*count = total;
	return 0;
}

int fl_group_leader(struct fl_node *node, uint64_t group, uint64_t *leader)
{
	struct waiter w;

	waiter_init(&w);
	return waiter_wait(&w, simple_req(node, SHARD_REQ_LEADER, group, 0, 0, waiter_done, &w),
			   NULL, leader);
}

void fl_node_metrics(struct fl_node *node, struct fl_metrics *m)
{
	memset(m, 0, sizeof(*m));
	m->shards_count = node->shards_count;
	for (uint32_t i = 0; i < node->shards_count; i++) {
		struct shard_stats *st = shard_stats(node->shards[i]);
		uint64_t depth = shard_inbox_depth(node->shards[i]);

		m->groups += atomic_load_explicit(&st->groups, memory_order_relaxed);
		m->leaders += atomic_load_explicit(&st->leaders, memory_order_relaxed);
		m->proposals += atomic_load_explicit(&st->proposals, memory_order_relaxed);
		m->commits += atomic_load_explicit(&st->commits, memory_order_relaxed);
		m->applied += atomic_load_explicit(&st->applied, memory_order_relaxed);
		m->bytes_in += atomic_load_explicit(&st->bytes_in, memory_order_relaxed);
		m->bytes_out += atomic_load_explicit(&st->bytes_out, memory_order_relaxed);
		m->elections += atomic_load_explicit(&st->elections, memory_order_relaxed);
		m->leaderships += atomic_load_explicit(&st->leaderships, memory_order_relaxed);
		m->peers_refused += atomic_load_explicit(&st->peers_refused, memory_order_relaxed);
		m->checks += atomic_load_explicit(&st->checks, memory_order_relaxed);
		m->divergences += atomic_load_explicit(&st->divergences, memory_order_relaxed);
		m->writes_refused_no_space +=
		    atomic_load_explicit(&st->writes_refused_no_space, memory_order_relaxed);
		m->appends_dropped_no_space +=
		    atomic_load_explicit(&st->appends_dropped_no_space, memory_order_relaxed);
		m->shards_no_space +=
		    (uint32_t)atomic_load_explicit(&st->space_low, memory_order_relaxed);
		m->snapshots_taken +=
		    atomic_load_explicit(&st->snapshots_taken, memory_order_relaxed);
		m->snapshots_sent +=
		    atomic_load_explicit(&st->snapshots_sent, memory_order_relaxed);
		m->snapshots_received +=
		    atomic_load_explicit(&st->snapshots_received, memory_order_relaxed);
		m->snapshot_bytes_written +=
		    atomic_load_explicit(&st->snapshot_bytes_written, memory_order_relaxed);
		m->groups_refused +=
		    atomic_load_explicit(&st->groups_refused, memory_order_relaxed);
		m->peers_over_budget +=
		    atomic_load_explicit(&st->peers_over_budget, memory_order_relaxed);
		m->fsyncs += shard_wal_fsyncs(node->shards[i]);
		m->wal_bytes += shard_wal_bytes(node->shards[i]);
		m->memory_bytes += shard_memory(node->shards[i]);
		if (depth > m->inbox_depth_max)
			m->inbox_depth_max = (uint32_t)depth;
		if (i < 64)
			m->inbox_depth[i] = (uint32_t)depth;
	}
}

static void node_histogram(struct fl_histogram *out, const struct hist *h)
{
	memset(out, 0, sizeof(*out));
	hist_add_to(h, out->counts, &out->sum);
}

int fl_shard_metrics(struct fl_node *node, uint32_t shard, struct fl_shard_metrics *m)
{
	struct shard *sh;
	struct shard_stats *st;
	struct wal_stats *ws;

	static_assert(HIST_BUCKETS == FL_HISTOGRAM_BUCKETS, "one bucket layout");
	if (shard >= node->shards_count)
		return -EINVAL;
	sh = node->shards[shard];
	st = shard_stats(sh);
	ws = shard_wal_stats(sh);
	memset(m, 0, sizeof(*m));
#define NODE_LOAD(field) atomic_load_explicit(&st->field, memory_order_relaxed)
	m->proposals = NODE_LOAD(proposals);
	m->commits = NODE_LOAD(commits);
	m->applied = NODE_LOAD(applied);
	m->fsyncs = shard_wal_fsyncs(sh);
	m->wal_bytes = shard_wal_bytes(sh);
	m->bytes_in = NODE_LOAD(bytes_in);
	m->bytes_out = NODE_LOAD(bytes_out);
	m->elections = NODE_LOAD(elections);
	m->leaderships = NODE_LOAD(leaderships);
	m->snapshots_taken = NODE_LOAD(snapshots_taken);
	m->snapshots_sent = NODE_LOAD(snapshots_sent);
	m->snapshots_received = NODE_LOAD(snapshots_received);
	m->snapshot_bytes_written = NODE_LOAD(snapshot_bytes_written);
	m->peers_refused = NODE_LOAD(peers_refused);
	m->checks = NODE_LOAD(checks);
	m->divergences = NODE_LOAD(divergences);
	m->writes_refused_no_space = NODE_LOAD(writes_refused_no_space);
	m->appends_dropped_no_space = NODE_LOAD(appends_dropped_no_space);
	m->repairs = NODE_LOAD(repairs);
	m->groups_refused = NODE_LOAD(groups_refused);
	m->peers_over_budget = NODE_LOAD(peers_over_budget);
	m->groups = NODE_LOAD(groups);
	m->leaders = NODE_LOAD(leaders);
	m->followers = NODE_LOAD(followers);
	m->learners = NODE_LOAD(learners);
	m->leaderless = NODE_LOAD(leaderless);
	m->repairing = NODE_LOAD(repairing);
	m->lag_max = NODE_LOAD(lag_max);
	m->lag_sum = NODE_LOAD(lag_sum);
	m->wal_disk_bytes = NODE_LOAD(wal_disk_size);
	m->no_space = NODE_LOAD(space_low) != 0;
#undef NODE_LOAD
	m->memory_bytes = shard_memory(sh);
	m->inbox_depth = (uint32_t)shard_inbox_depth(sh);
	node_histogram(&m->commit_us, &st->commit_us);
	node_histogram(&m->apply_us, &st->apply_us);
	node_histogram(&m->fsync_us, &ws->fsync_us);
	node_histogram(&m->batch_bytes, &ws->batch_bytes);
	node_histogram(&m->batch_entries, &ws->batch_entries);
	return 0;
}

int node_shard_call(struct fl_node *node, uint32_t shard, struct shard_req *req, uint64_t *result)
{
	struct waiter w;
	int rv;

	waiter_init(&w);
	req->cb = waiter_done;
	req->arg = &w;
	/* A full inbox drains within a turn or two: retry, bounded. */
	for (int i = 0; i < 1000; i++) {
		rv = shard_submit(node->shards[shard], req);
		if (rv != -EAGAIN)
			break;
		usleep(1000);
	}
	if (rv != 0)
		free(req); /* Otherwise the shard frees it once the callback ran. */
	return waiter_wait(&w, rv, result, NULL);
}
