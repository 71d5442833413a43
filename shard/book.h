/* A node's address book: the other nodes it knows (id and the "host:port"
 * of each one's peer listener), as kept in the data directory's
 * flotilla.peers and merged with the peers of the node's configuration.
 *
 * The file is text, one peer a line, then the checksum of the lines above:
 *   flotilla-peers 1
 *   peer ID ADDR FLAG_ADDR
 *   checksum HEX16
 * ADDR is the address in force, or "-" when the peer was removed at run
 * time; FLAG_ADDR is the address the configuration (flotilla-node --peer)
 * gave at the last start, or "-" when it gave none. HEX16 is the XXH3-64 of
 * every byte before the checksum line. It is replaced atomically: a
 * temporary file, fsync, rename, fsync of the directory.
 *
 * Not thread-safe: the node guards its book with a lock. */
#ifndef SHARD_BOOK_H
#define SHARD_BOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "flotilla.h"

#define BOOK_FILE      "flotilla.peers"
#define BOOK_FILE_TEMP "flotilla.peers.tmp"
/* Peers in force, plus the removed ones the configuration still names. */
#define BOOK_ENTRIES_MAX (2 * FL_PEERS_MAX)

struct book_entry {
	uint64_t id;
	char addr[FL_ADDR_SIZE_MAX];      /* In force; "" when removed. */
	char flag_addr[FL_ADDR_SIZE_MAX]; /* The configuration's at the last start; "": none. */
	uint32_t epoch;                   /* Bumped by each change of addr (not persisted). */
};

struct book {
	struct book_entry entries[BOOK_ENTRIES_MAX];
	uint32_t count;
};

/* Read dir's flotilla.peers into b. Returns 0 (an absent file gives an
 * empty book), ERR_DIR_CORRUPT with why naming the fault (bad checksum or
 * line), or -errno. */
int book_load(struct book *b, const char *dir, char *why, size_t why_size);

/* Replace dir's flotilla.peers with b, atomically. Returns 0 or -errno. */
int book_save(const struct book *b, const char *dir);

/* Merge the configuration's peers into b (the rule in include/flotilla.h,
 * "THE ADDRESS BOOK"). Returns 0, or ERR_PEERS_FULL when the result would
 * not fit. */
int book_merge(struct book *b, const struct fl_peer *peers, uint32_t peers_count);

/* The entry of id, removed or not; NULL when none. */
struct book_entry *book_find(struct book *b, uint64_t id);

/* Peers in force (not removed). */
uint32_t book_live_count(const struct book *b);

/* Whether addr is one the file can hold: 1 to FL_ADDR_SIZE_MAX - 1
 * printable bytes, no space, not "-". */
bool book_addr_is_valid(const char *addr);

/* Set id's address (adding it, or bringing back a removed one). Returns 0
 * (*changed says whether anything did), or ERR_PEERS_FULL. */
int book_set(struct book *b, uint64_t id, const char *addr, bool *changed);

/* Remove id. Returns 0, or ERR_PEER_UNKNOWN when it is not in force. */
int book_remove(struct book *b, uint64_t id);

#endif /* SHARD_BOOK_H */
