/* flotilla-wal: verify, dump and summarise a WAL directory.
 *
 * It opens the WAL read-only, without io_uring: nothing on disk changes, a
 * torn tail is reported rather than cut, and corruption is reported with
 * the segment, offset and group where recovery stopped. Records before that
 * point are still printed by dump, so the damage can be looked at.
 *
 * Exit status: 0 the WAL opens as is (a torn tail is normal after a crash),
 * 1 the WAL is corrupt (it would refuse to open: a bad record, or a segment
 * in use missing, zeroed, truncated or replaced) or, for verify, holds a
 * file named like a segment that is none of its own, 2 usage or I/O error. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "io/segment.h"
#include "io/wal.h"

struct tool {
	const char *command;
	const char *dir;
	bool has_group;
	uint64_t group;
	bool entries;      /* dump: list each entry. */
	bool records_only; /* dump: skip the per-group summary. */
	bool groups_only;  /* dump: only the per-group summary. */
	uint64_t records_printed;
};

static void tool_usage(FILE *out)
{
	fprintf(out,
		"usage: flotilla-wal <command> [options] <wal-dir>\n"
		"commands:\n"
		"  verify   check every record, every group's indexes and that no segment in use\n"
		"           is missing or foreign; exit 1 if corrupt or a file is foreign\n"
		"  dump     print every record, then a summary per group\n"
		"             --group=<id>  only this group\n"
		"             --entries     also list each entry (index, term, type, size, bytes)\n"
		"             --records     only the records\n"
		"             --groups      only the per-group summary\n"
		"  stat     segments, disk use, groups and batches\n"
		"The WAL is opened read-only: nothing is changed, a torn tail is only reported.\n"
		"dump and stat read past damaged records as a node does (salvage) and name the\n"
		"groups a node would repair from its peers; verify reports the first exactly,\n"
		"then those groups.\n");
}

static void tool_print_entries(const struct segment_record *record)
{
	struct segment_entries cursor;
	const uint8_t *data;
	uint32_t size, type;
	uint64_t index = record->first_index;

	segment_entries_init(&cursor, record);
	while (segment_entries_next(&cursor, &size, &type, &data)) {
		printf("      index %" PRIu64 " term %" PRIu64 " type %" PRIu32 " size %" PRIu32
		       "  ",
		       index++, record->term, type, size);
		for (uint32_t i = 0; i < size && i < 16; i++)
			printf("%02x", data[i]);
		printf("%s\n", size > 16 ? "..." : "");
	}
}

static void tool_scan(void *arg, uint64_t seq, uint64_t offset, const struct segment_record *record)
{
	struct tool *tool = arg;
	char name[SEGMENT_NAME_SIZE];
	uint64_t term, vote, commit;

	if (tool->groups_only || (tool->has_group && record->group != tool->group) ||
	    record->type == SEGMENT_RECORD_PAD)
		return;
	segment_name(name, seq);
	if (record->type == SEGMENT_RECORD_END) { /* The batch's end: no group, no payload. */
		printf("%.16s +%-9" PRIu64 " batch %-8" PRIu64 " end\n", name, offset,
		       record->batch);
		tool->records_printed++;
		return;
	}
	printf("%.16s +%-9" PRIu64 " batch %-8" PRIu64 " %-8s group %-6" PRIu64, name, offset,
	       record->batch, segment_record_type_name(record->type), record->group);
	switch (record->type) {
	case SEGMENT_RECORD_ENTRIES: {
		struct segment_entries cursor;

		segment_entries_init(&cursor, record);
		printf(" index %" PRIu64 "..%" PRIu64 " term %" PRIu64 " (%" PRIu32
		       " entries, %" PRIu32 " bytes)%s\n",
		       record->first_index, record->first_index + cursor.count - 1, record->term,
		       cursor.count, record->size,
		       record->flags & SEGMENT_ENTRIES_COPY ? " copy" : "");
		if (tool->entries)
			tool_print_entries(record);
		break;
	}
	case SEGMENT_RECORD_HARD:
		segment_hard_get(record->payload, &term, &vote, &commit);
		printf(" term %" PRIu64 " vote %" PRIu64 " commit %" PRIu64 "\n", term, vote,
		       commit);
		break;
	case SEGMENT_RECORD_MARK:
		printf(
		    " index %" PRIu64 " term %" PRIu64 " %s\n", record->first_index, record->term,
		    record->flags & SEGMENT_MARK_KEEP ? "(log after it kept)" : "(log replaced)");
		break;
	default:
		printf("\n");
		break;
	}
	tool->records_printed++;
}

static void tool_print_group(const struct wal_group *g)
{
	printf("group %" PRIu64 ": ", g->group);
	if (g->removed) {
		printf("removed\n");
		return;
	}
	if (g->last_index >= g->first_index)
		printf("entries %" PRIu64 "..%" PRIu64 " (%" PRIu64 " live, %" PRIu32
		       " runs, %" PRIu64 " bytes)",
		       g->first_index, g->last_index, g->last_index - g->first_index + 1,
		       g->runs_count, g->live_size);
	else
		printf("no entries after index %" PRIu64, g->last_index);
	if (g->mark_index != 0)
		printf(", mark %" PRIu64 " term %" PRIu64, g->mark_index, g->mark_term);
	if (g->has_hard)
		printf(", hard term %" PRIu64 " vote %" PRIu64 " commit %" PRIu64, g->hard.term,
		       g->hard.vote, g->hard.commit);
	if (g->damaged)
		printf(", DAMAGED from index %" PRIu64 " (segment %016" PRIx64 " offset %" PRIu64
		       "): a node repairs it from its peers",
		       g->damaged_index, g->damaged_seq, g->damaged_offset);
	printf("\n");
}

/* After verify found corruption: what a node would do about it. */
static void tool_print_salvage(const char *dir)
{
	const struct wal_group *g = NULL;
	struct wal_config config;
	struct wal wal;

	wal_config_default(&config);
	config.read_only = true;
	config.salvage = true;
	if (wal_init(&wal, NULL, dir, &config) != 0) {
		printf("a node cannot start over it either: %s\n", wal_why(&wal));
		return;
	}
	printf("a node starts over it and repairs from its peers:");
	if (wal.stats.segments_lost > 0)
		printf(" every group (a segment was lost; groups it alone held are unknown "
		       "here and repair too):");
	while ((g = wal_group_next(&wal, g)) != NULL) {
		if (g->damaged && !g->removed)
			printf(" group %" PRIu64 " (from index %" PRIu64 ")", g->group,
			       g->damaged_index);
	}
	printf("\n");
	wal_deinit(&wal);
}

static void tool_print_torn(const struct wal_stats *stats)
{
	char name[SEGMENT_NAME_SIZE];

	if (!stats->torn) {
		printf("torn tail: none\n");
		return;
	}
	segment_name(name, stats->torn_seq);
	printf("torn tail: segment %s offset %" PRIu64
	       " (an unacknowledged write cut short; the next open cuts it off)\n",
	       name, stats->torn_offset);
}

static void tool_stat(const struct wal *wal)
{
	struct wal_stats stats;
	const struct wal_group *g = NULL;
	uint64_t used = 0, removed = 0, first_batch = 0;

	wal_stats_get(wal, &stats);
	printf("%-18s %10s %10s %9s  %-21s %s\n", "segment", "size", "used", "records", "batches",
	       "end");
	for (uint32_t i = 0; wal_segment_at(wal, i) != NULL; i++) {
		const struct wal_segment *s = wal_segment_at(wal, i);
		char name[SEGMENT_NAME_SIZE], batches[48];

		segment_name(name, s->seq);
		snprintf(batches, sizeof(batches), "%" PRIu64 "..%" PRIu64, s->first_batch,
			 s->last_batch);
		printf("%-18s %10" PRIu64 " %10" PRIu64 " %9" PRIu64 "  %-21s %s\n", name, s->size,
		       s->end, s->records_count, s->records_count ? batches : "-",
		       s->end_known
			   ? "matches next header"
			   : (i + 1 == stats.segments_live ? "last segment" : "unchecked"));
		used += s->end;
		if (first_batch == 0)
			first_batch = s->first_batch;
	}
	while ((g = wal_group_next(wal, g)) != NULL)
		removed += g->removed;
	printf("segments: %" PRIu64 " (%" PRIu64 " bytes on disk, %" PRIu64 " used)\n",
	       stats.segments_live, stats.disk_size, used);
	printf("records: %" PRIu64 " (%" PRIu64 " entries); batches %" PRIu64 "..%" PRIu64 "\n",
	       stats.recovered_records, stats.entries, first_batch, wal_durable(wal));
	printf("groups: %" PRIu64 " (%" PRIu64 " removed)\n", stats.groups, removed);
	printf("recovery scan: %.1f ms\n", (double)stats.recovery_ns / 1e6);
	tool_print_torn(&stats);
}

static int tool_parse(struct tool *tool, int argc, char **argv)
{
	if (argc < 3)
		return -EINVAL;
	tool->command = argv[1];
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];

		if (strncmp(a, "--group=", 8) == 0) {
			char *end;

			tool->has_group = true;
			tool->group = strtoull(a + 8, &end, 10);
			if (*end != '\0')
				return -EINVAL;
		} else if (strcmp(a, "--entries") == 0) {
			tool->entries = true;
		} else if (strcmp(a, "--records") == 0) {
			tool->records_only = true;
		} else if (strcmp(a, "--groups") == 0) {
			tool->groups_only = true;
		} else if (a[0] == '-' || tool->dir != NULL) {
			return -EINVAL;
		} else {
			tool->dir = a;
		}
	}
	if (tool->dir == NULL)
		return -EINVAL;
	if (strcmp(tool->command, "verify") && strcmp(tool->command, "dump") &&
	    strcmp(tool->command, "stat"))
		return -EINVAL;
	return 0;
}

int main(int argc, char **argv)
{
	struct tool tool = {0};
	struct wal_config config;
	struct wal wal;
	int rv;

	if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		tool_usage(stdout);
		return 0;
	}
	if (tool_parse(&tool, argc, argv) != 0) {
		tool_usage(stderr);
		return 2;
	}
	wal_config_default(&config);
	config.read_only = true;
	config.salvage = strcmp(tool.command, "verify") != 0;
	if (strcmp(tool.command, "dump") == 0) {
		config.scan_cb = tool_scan;
		config.scan_arg = &tool;
	}
	rv = wal_init(&wal, NULL, tool.dir, &config);
	if (rv == WAL_ERR_CORRUPT || rv == WAL_ERR_GAP) {
		printf("CORRUPT: %s: %s\n", err_str(rv), wal_why(&wal));
		if (rv == WAL_ERR_CORRUPT)
			tool_print_salvage(tool.dir);
		return 1;
	}
	if (rv != 0) {
		fprintf(stderr, "flotilla-wal: %s: %s\n", err_str(rv), wal_why(&wal));
		return 2;
	}
	if (wal.stats.damaged_records > 0)
		printf("DAMAGED: %" PRIu64 " record(s); first: %s\n", wal.stats.damaged_records,
		       wal_why(&wal));
	if (wal.stats.segments_lost > 0)
		printf("DAMAGED: %s; every group repairs from its peers\n", wal_loss_why(&wal));
	else if (wal.stats.files_foreign > 0)
		printf("FOREIGN: %s; a node moves such files aside\n", wal_loss_why(&wal));
	else if (wal_has_lost_segments(&wal))
		printf("note: a segment was lost at an earlier start; groups not reset since then "
		       "repair from their peers at every start until the segments written before "
		       "the loss are reclaimed\n");
	if (strcmp(tool.command, "verify") == 0 && wal.stats.files_foreign > 0) {
		wal_deinit(&wal);
		return 1;
	}
	if (strcmp(tool.command, "stat") == 0) {
		tool_stat(&wal);
	} else if (strcmp(tool.command, "dump") == 0 && !tool.records_only) {
		const struct wal_group *g = NULL;

		if (!tool.groups_only)
			printf("-- groups\n");
		while ((g = wal_group_next(&wal, g)) != NULL) {
			if (!tool.has_group || g->group == tool.group)
				tool_print_group(g);
		}
	} else if (strcmp(tool.command, "verify") == 0) {
		struct wal_stats stats;

		wal_stats_get(&wal, &stats);
		printf("ok: %" PRIu64 " segments, %" PRIu64 " records, %" PRIu64
		       " entries, %" PRIu64 " groups, durable through batch %" PRIu64 "\n",
		       stats.segments_live, stats.recovered_records, stats.entries, stats.groups,
		       wal_durable(&wal));
		tool_print_torn(&stats);
	}
	wal_deinit(&wal);
	return 0;
}
