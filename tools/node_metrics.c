/* GET /metrics: the node's metrics in the Prometheus text format, served by
 * libmicrohttpd on a thread of its own (--metrics HOST:PORT).
 *
 * Each request reads the library's counters (fl_node_metrics() for the
 * shard count, fl_shard_metrics() per shard: relaxed loads, no shard is
 * stopped or asked) and formats them (tools/metrics_text.c). Anything else
 * than GET /metrics gets 404 or 405. The listener is bound here, so that
 * port 0 lets the kernel choose and the node can print the port. */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tools/metrics_text.h"
#include "tools/node_internal.h"

enum {
	NODE_METRICS_CONNS_MAX = 16, /* Scrapers at once: a handful is plenty. */
	NODE_METRICS_TIMEOUT_S = 10, /* An idle scrape connection is closed after this. */
};

static enum MHD_Result node_metrics_reply(struct MHD_Connection *conn, unsigned status,
					  const char *type, char *body, size_t size)
{
	/* MUST_FREE: the response frees body with free() once sent. */
	struct MHD_Response *response =
	    MHD_create_response_from_buffer(size, body, MHD_RESPMEM_MUST_FREE);
	enum MHD_Result rv;

	if (response == NULL) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(response, "Content-Type", type);
	rv = MHD_queue_response(conn, status, response);
	MHD_destroy_response(response);
	return rv;
}

static enum MHD_Result node_metrics_text_reply(struct MHD_Connection *conn, unsigned status,
					       const char *text)
{
	char *body = strdup(text);

	if (body == NULL)
		return MHD_NO;
	return node_metrics_reply(conn, status, "text/plain; charset=utf-8", body, strlen(body));
}

/* Append the client port's counters (node_conn.c): node-wide, label node. */
static int node_metrics_clients(struct server *s, struct metrics_text *t)
{
	unsigned long long id = (unsigned long long)s->opt.id;
	char text[2560];
	size_t cap;
	char *data;
	int n;

	n = snprintf(
	    text, sizeof(text),
	    "# HELP flotilla_client_connections_refused_total Client connections refused at "
	    "--client-conns-max.\n"
	    "# TYPE flotilla_client_connections_refused_total counter\n"
	    "flotilla_client_connections_refused_total{node=\"%llu\"} %llu\n"
	    "# HELP flotilla_client_timeouts_total Client connections closed at a deadline: "
	    "idle (--client-idle-s) or request (--client-request-ms).\n"
	    "# TYPE flotilla_client_timeouts_total counter\n"
	    "flotilla_client_timeouts_total{node=\"%llu\",kind=\"idle\"} %llu\n"
	    "flotilla_client_timeouts_total{node=\"%llu\",kind=\"request\"} %llu\n"
	    "# HELP flotilla_client_connections_refused_per_source_total Client connections "
	    "refused at --client-conns-per-source-max.\n"
	    "# TYPE flotilla_client_connections_refused_per_source_total counter\n"
	    "flotilla_client_connections_refused_per_source_total{node=\"%llu\"} %llu\n"
	    "# HELP flotilla_groups_max The most groups this node hosts (--groups-max).\n"
	    "# TYPE flotilla_groups_max gauge\n"
	    "flotilla_groups_max{node=\"%llu\"} %u\n"
	    "# HELP flotilla_client_buffer_bytes Bytes of client buffers and answers not yet "
	    "sent.\n"
	    "# TYPE flotilla_client_buffer_bytes gauge\n"
	    "flotilla_client_buffer_bytes{node=\"%llu\"} %llu\n"
	    "# HELP flotilla_client_buffer_budget_bytes The most bytes client buffers may hold "
	    "(--client-buffer-budget-mb).\n"
	    "# TYPE flotilla_client_buffer_budget_bytes gauge\n"
	    "flotilla_client_buffer_budget_bytes{node=\"%llu\"} %llu\n"
	    "# HELP flotilla_client_buffer_budget_hits_total Answers refused BUSY and "
	    "connections held unread at --client-buffer-budget-mb.\n"
	    "# TYPE flotilla_client_buffer_budget_hits_total counter\n"
	    "flotilla_client_buffer_budget_hits_total{node=\"%llu\"} %llu\n",
	    id, (unsigned long long)atomic_load(&s->conns_refused), id,
	    (unsigned long long)atomic_load(&s->timeouts_idle), id,
	    (unsigned long long)atomic_load(&s->timeouts_request), id,
	    (unsigned long long)atomic_load(&s->conns_refused_per_source), id, s->opt.groups_max,
	    id, (unsigned long long)atomic_load(&s->budget_used), id,
	    (unsigned long long)s->budget_max, id,
	    (unsigned long long)atomic_load(&s->budget_hits));
	if (n < 0 || (size_t)n >= sizeof(text))
		return -EINVAL;
	if (t->len + (size_t)n + 1 > t->cap) {
		cap = t->len + (size_t)n + 1;
		data = realloc(t->data, cap);
		if (data == NULL)
			return -ENOMEM;
		t->data = data;
		t->cap = cap;
	}
	memcpy(t->data + t->len, text, (size_t)n + 1);
	t->len += (size_t)n;
	return 0;
}

/* The client TLS counters (node_tls.c), appended to t. */
static int node_metrics_tls(struct server *s, struct metrics_text *t)
{
	unsigned long long id = (unsigned long long)s->opt.id;
	char text[768];
	char *data;
	int n;

	n = snprintf(text, sizeof(text),
		     "# HELP flotilla_client_tls_refused_total Client connections refused by "
		     "TLS: failed handshakes (no, unknown or wrong certificate) and plaintext "
		     "clients of a TLS node.\n"
		     "# TYPE flotilla_client_tls_refused_total counter\n"
		     "flotilla_client_tls_refused_total{node=\"%llu\"} %llu\n"
		     "# HELP flotilla_client_handshake_timeouts_total Client connections closed "
		     "with a TLS handshake not over after --client-handshake-ms.\n"
		     "# TYPE flotilla_client_handshake_timeouts_total counter\n"
		     "flotilla_client_handshake_timeouts_total{node=\"%llu\"} %llu\n",
		     id, (unsigned long long)atomic_load(&s->tls_refused), id,
		     (unsigned long long)atomic_load(&s->timeouts_handshake));
	if (n < 0 || (size_t)n >= sizeof(text))
		return -EINVAL;
	if (t->len + (size_t)n + 1 > t->cap) {
		data = realloc(t->data, t->len + (size_t)n + 1);
		if (data == NULL)
			return -ENOMEM;
		t->data = data;
		t->cap = t->len + (size_t)n + 1;
	}
	memcpy(t->data + t->len, text, (size_t)n + 1);
	t->len += (size_t)n;
	return 0;
}

/* The body of GET /metrics, or an error. */
static int node_metrics_render(struct server *s, struct metrics_text *t)
{
	struct fl_metrics node;
	struct fl_shard_metrics *shards;
	int rv = 0;

	fl_node_metrics(s->node, &node);
	shards = calloc(node.shards_count ? node.shards_count : 1, sizeof(*shards));
	if (shards == NULL)
		return -ENOMEM;
	for (uint32_t i = 0; i < node.shards_count && rv == 0; i++)
		rv = fl_shard_metrics(s->node, i, &shards[i]);
	if (rv == 0)
		rv = metrics_text_node(t, s->opt.id, shards, node.shards_count);
	if (rv == 0)
		rv = node_metrics_clients(s, t);
	if (rv == 0)
		rv = node_metrics_tls(s, t);
	free(shards);
	return rv;
}

static enum MHD_Result node_metrics_handle(void *cls, struct MHD_Connection *conn, const char *url,
					   const char *method, const char *version,
					   const char *upload_data, size_t *upload_data_size,
					   void **state)
{
	struct server *s = cls;
	struct metrics_text t = {0};

	(void)version;
	(void)upload_data;
	(void)upload_data_size;
	(void)state;
	if (strcmp(url, "/metrics") != 0)
		return node_metrics_text_reply(conn, MHD_HTTP_NOT_FOUND,
					       "not found: the metrics are at /metrics\n");
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return node_metrics_text_reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
					       "only GET /metrics\n");
	if (node_metrics_render(s, &t) != 0) {
		metrics_text_free(&t);
		return node_metrics_text_reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
					       "out of memory\n");
	}
	/* The response owns t.data from here. */
	return node_metrics_reply(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
				  t.data, t.len);
}

int node_metrics_start(struct server *s)
{
	struct sockaddr_in addr;
	socklen_t len = sizeof(addr);
	int one = 1, fd, rv;

	if (client_parse_addr(s->opt.metrics_addr, &addr) != 0) {
		fprintf(stderr, "flotilla-node: bad --metrics address '%s'\n", s->opt.metrics_addr);
		return -EINVAL;
	}
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(fd, 64) != 0 ||
	    getsockname(fd, (struct sockaddr *)&addr, &len) != 0) {
		rv = -errno;
		close(fd);
		return rv;
	}
	s->metrics_port = ntohs(addr.sin_port);
	/* The daemon owns fd from here and closes it in MHD_stop_daemon(). */
	s->metrics = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL,
				      NULL, node_metrics_handle, s, MHD_OPTION_LISTEN_SOCKET, fd,
				      MHD_OPTION_CONNECTION_LIMIT, (unsigned)NODE_METRICS_CONNS_MAX,
				      MHD_OPTION_CONNECTION_TIMEOUT,
				      (unsigned)NODE_METRICS_TIMEOUT_S, MHD_OPTION_END);
	if (s->metrics == NULL) {
		close(fd);
		return -EIO;
	}
	return 0;
}

void node_metrics_stop(struct server *s)
{
	if (s->metrics != NULL)
		MHD_stop_daemon(s->metrics);
	s->metrics = NULL;
}
