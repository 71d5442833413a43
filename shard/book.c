/* The address book's file and its merge with the configuration (see
 * book.h). */
#include "shard/book.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>

#include "base/err.h"

#define BOOK_MAGIC     "flotilla-peers 1\n"
#define BOOK_FILE_MAX  (64 + BOOK_ENTRIES_MAX * (24 + 2 * FL_ADDR_SIZE_MAX))
#define BOOK_SUM_LABEL "checksum "

struct book_entry *book_find(struct book *b, uint64_t id)
{
	for (uint32_t i = 0; i < b->count; i++)
		if (b->entries[i].id == id)
			return &b->entries[i];
	return NULL;
}

uint32_t book_live_count(const struct book *b)
{
	uint32_t live = 0;

	for (uint32_t i = 0; i < b->count; i++)
		live += b->entries[i].addr[0] != '\0';
	return live;
}

bool book_addr_is_valid(const char *addr)
{
	size_t len = addr != NULL ? strnlen(addr, FL_ADDR_SIZE_MAX) : 0;

	if (len == 0 || len >= FL_ADDR_SIZE_MAX || strcmp(addr, "-") == 0)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isgraph((unsigned char)addr[i]))
			return false;
	return true;
}

int book_set(struct book *b, uint64_t id, const char *addr, bool *changed)
{
	struct book_entry *e = book_find(b, id);

	*changed = false;
	if (e != NULL && strcmp(e->addr, addr) == 0)
		return 0;
	if ((e == NULL || e->addr[0] == '\0') && book_live_count(b) >= FL_PEERS_MAX)
		return ERR_PEERS_FULL;
	if (e == NULL) {
		if (b->count == BOOK_ENTRIES_MAX)
			return ERR_PEERS_FULL;
		e = &b->entries[b->count++];
		*e = (struct book_entry){.id = id};
	}
	snprintf(e->addr, sizeof(e->addr), "%s", addr);
	e->epoch++;
	*changed = true;
	return 0;
}

int book_remove(struct book *b, uint64_t id)
{
	struct book_entry *e = book_find(b, id);

	if (e == NULL || e->addr[0] == '\0')
		return ERR_PEER_UNKNOWN;
	e->addr[0] = '\0';
	e->epoch++;
	/* Kept as a removal only while the configuration names it, so that the
	 * next start does not bring it back. */
	if (e->flag_addr[0] == '\0')
		*e = b->entries[--b->count];
	return 0;
}

int book_merge(struct book *b, const struct fl_peer *peers, uint32_t peers_count)
{
	struct book next = *b;

	/* Entries the configuration named at the last start but names no more:
	 * the configuration no longer says anything about them. */
	for (uint32_t i = 0; i < next.count; i++) {
		bool named = false;

		for (uint32_t j = 0; j < peers_count && !named; j++)
			named = peers[j].id == next.entries[i].id;
		if (!named)
			next.entries[i].flag_addr[0] = '\0';
	}
	for (uint32_t j = 0; j < peers_count; j++) {
		struct book_entry *e = book_find(&next, peers[j].id);

		if (e == NULL) {
			if (next.count == BOOK_ENTRIES_MAX)
				return ERR_PEERS_FULL;
			e = &next.entries[next.count++];
			*e = (struct book_entry){.id = peers[j].id};
		}
		/* A flag changed since the last start is the operator's newest
		 * word; an unchanged one yields to the changes made at run time. */
		if (strcmp(e->flag_addr, peers[j].addr) != 0)
			snprintf(e->addr, sizeof(e->addr), "%s", peers[j].addr);
		snprintf(e->flag_addr, sizeof(e->flag_addr), "%s", peers[j].addr);
	}
	/* Removed entries the configuration no longer names need no record. */
	for (uint32_t i = 0; i < next.count;)
		if (next.entries[i].addr[0] == '\0' && next.entries[i].flag_addr[0] == '\0')
			next.entries[i] = next.entries[--next.count];
		else
			i++;
	if (book_live_count(&next) > FL_PEERS_MAX)
		return ERR_PEERS_FULL;
	*b = next;
	return 0;
}

static size_t book_encode(const struct book *b, char *buf, size_t size)
{
	size_t n = (size_t)snprintf(buf, size, "%s", BOOK_MAGIC);

	for (uint32_t i = 0; i < b->count && n < size; i++) {
		const struct book_entry *e = &b->entries[i];

		n += (size_t)snprintf(buf + n, size - n, "peer %" PRIu64 " %s %s\n", e->id,
				      e->addr[0] != '\0' ? e->addr : "-",
				      e->flag_addr[0] != '\0' ? e->flag_addr : "-");
	}
	if (n < size)
		n += (size_t)snprintf(buf + n, size - n, BOOK_SUM_LABEL "%016" PRIx64 "\n",
				      (uint64_t)XXH3_64bits(buf, n));
	return n < size ? n : 0;
}

/* One "peer ID ADDR FLAG_ADDR" line into b. Returns 0 or -EBADMSG. */
static int book_decode_line(struct book *b, const char *line)
{
	char addr[FL_ADDR_SIZE_MAX], flag_addr[FL_ADDR_SIZE_MAX], tail;
	unsigned long long id;
	struct book_entry *e;

	if (sscanf(line, "peer %llu %255s %255s %c", &id, addr, flag_addr, &tail) != 3 || id == 0 ||
	    b->count == BOOK_ENTRIES_MAX || book_find(b, id) != NULL)
		return -EBADMSG;
	if ((strcmp(addr, "-") != 0 && !book_addr_is_valid(addr)) ||
	    (strcmp(flag_addr, "-") != 0 && !book_addr_is_valid(flag_addr)))
		return -EBADMSG;
	e = &b->entries[b->count++];
	*e = (struct book_entry){.id = id};
	if (strcmp(addr, "-") != 0)
		snprintf(e->addr, sizeof(e->addr), "%s", addr);
	if (strcmp(flag_addr, "-") != 0)
		snprintf(e->flag_addr, sizeof(e->flag_addr), "%s", flag_addr);
	return 0;
}

static int book_decode(struct book *b, char *buf, size_t size, char *why, size_t why_size)
{
	char *sum, *line, *next;
	unsigned long long want;

	memset(b, 0, sizeof(*b));
	buf[size] = '\0';
	sum = size > 0 ? strstr(buf, "\n" BOOK_SUM_LABEL) : NULL;
	if (strncmp(buf, BOOK_MAGIC, strlen(BOOK_MAGIC)) != 0 || sum == NULL) {
		snprintf(why, why_size, "no '%.14s' header or no checksum line", BOOK_MAGIC);
		return ERR_DIR_CORRUPT;
	}
	sum++;
	if (sscanf(sum, BOOK_SUM_LABEL "%16llx", &want) != 1 ||
	    strlen(sum) != strlen(BOOK_SUM_LABEL) + 17 ||
	    want != XXH3_64bits(buf, (size_t)(sum - buf))) {
		snprintf(why, why_size, "its checksum does not match its contents");
		return ERR_DIR_CORRUPT;
	}
	*sum = '\0';
	for (line = buf + strlen(BOOK_MAGIC); *line != '\0'; line = next) {
		next = strchr(line, '\n');
		*next++ = '\0'; /* Every line ends with one: the checksum line follows. */
		if (book_decode_line(b, line) != 0) {
			snprintf(why, why_size, "bad line '%.80s'", line);
			return ERR_DIR_CORRUPT;
		}
	}
	return 0;
}

int book_load(struct book *b, const char *dir, char *why, size_t why_size)
{
	char path[4200];
	char *buf = malloc(BOOK_FILE_MAX + 1);
	ssize_t n;
	int fd, rv;

	memset(b, 0, sizeof(*b));
	if (buf == NULL)
		return -ENOMEM;
	snprintf(path, sizeof(path), "%s/%s", dir, BOOK_FILE);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rv = errno == ENOENT ? 0 : -errno;
		if (rv != 0)
			snprintf(why, why_size, "cannot read %s: %s", path, strerror(errno));
		free(buf);
		return rv;
	}
	n = pread(fd, buf, BOOK_FILE_MAX, 0);
	close(fd);
	if (n < 0) {
		rv = -errno;
		snprintf(why, why_size, "cannot read %s: %s", path, strerror(errno));
	} else if (n == BOOK_FILE_MAX) {
		rv = ERR_DIR_CORRUPT;
		snprintf(why, why_size, "%s is longer than an address book can be", path);
	} else {
		char reason[160];

		rv = book_decode(b, buf, (size_t)n, reason, sizeof(reason));
		if (rv != 0)
			snprintf(why, why_size, "%s fails verification: %s", path, reason);
	}
	free(buf);
	return rv;
}

int book_save(const struct book *b, const char *dir)
{
	char temp[4200], path[4200];
	char *buf = malloc(BOOK_FILE_MAX);
	size_t size = buf != NULL ? book_encode(b, buf, BOOK_FILE_MAX) : 0;
	int fd, rv = 0;

	if (size == 0) {
		free(buf);
		return -ENOMEM;
	}
	snprintf(temp, sizeof(temp), "%s/%s", dir, BOOK_FILE_TEMP);
	snprintf(path, sizeof(path), "%s/%s", dir, BOOK_FILE);
	fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rv = -errno;
		goto out;
	}
	if (pwrite(fd, buf, size, 0) != (ssize_t)size)
		rv = errno ? -errno : -EIO;
	/* Durable before the name points at it: a crash after the rename must
	 * not leave an empty book. */
	if (rv == 0 && fsync(fd) != 0)
		rv = -errno;
	close(fd);
	if (rv == 0 && rename(temp, path) != 0)
		rv = -errno;
	if (rv != 0) {
		unlink(temp);
		goto out;
	}
	/* The rename is durable once the directory is. */
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		rv = -errno;
		goto out;
	}
	if (fsync(fd) != 0)
		rv = -errno;
	close(fd);
out:
	free(buf);
	return rv;
}
