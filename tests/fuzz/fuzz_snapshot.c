/* Fuzz target: what a node reads back from its snapshot directory
 * (shard/snapshot.c): a group's manifest, and the snapshot file it names,
 * restored into the key-value state machine of flotilla-node (tools/kv.c).
 *
 * INPUT: u8 fix, u16 manifest_size, manifest bytes, then the snapshot file
 * (the rest of the input). fix says what the harness makes right first,
 * since the fuzzer cannot forge XXH3 checksums:
 *    bit 0: magic and version      bit 1: group (FUZZ_SNAPSHOT_GROUP)
 *    bit 2: conf_size fits the manifest's size (rounded down to 8)
 *    bit 3: the trailing checksum  bit 4: size and checksum of the file in
 *                                         the manifest match the file
 * Checks: no crash; a manifest that reads back writes and reads back the
 * same; a snapshot that restores saves, and restores again into the same
 * map (same digest record and key count). */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <xxhash.h>

#include "base/le.h"
#include "shard/snapshot.h"
#include "tests/fuzz/fuzz.h"
#include "tools/kv.h"

#define FUZZ_SNAPSHOT_GROUP         7
#define FUZZ_SNAPSHOT_INDEX_DEFAULT 5
#define FUZZ_MANIFEST_SIZE_MAX      512

static void fuzz_snapshot_fix(uint8_t *m, size_t *size, uint8_t fix, const uint8_t *file,
			      size_t file_size)
{
	if (*size < 64)
		return;
	*size &= ~(size_t)7;
	if (fix & 1) {
		le_put32(m, 0x504e5346u);
		le_put32(m + 4, 1);
	}
	if (fix & 2)
		le_put64(m + 8, FUZZ_SNAPSHOT_GROUP);
	if (fix & 4)
		le_put32(m + 48, (uint32_t)(*size - 64));
	if (fix & 16) {
		le_put64(m + 32, file_size);
		le_put64(m + 40, XXH3_64bits(file, file_size));
	}
	if (fix & 8)
		le_put64(m + *size - 8, XXH3_64bits(m, *size - 8));
}

static bool fuzz_snapshot_same_meta(const struct snapshot_meta *a, const struct snapshot_meta *b)
{
	if (a->group != b->group || a->index != b->index || a->term != b->term ||
	    a->size != b->size || a->checksum != b->checksum ||
	    a->conf.members_count != b->conf.members_count || a->conf.joint != b->conf.joint)
		return false;
	for (uint32_t i = 0; i < a->conf.members_count; i++) {
		if (a->conf.members[i].id != b->conf.members[i].id ||
		    a->conf.members[i].role != b->conf.members[i].role ||
		    a->conf.members[i].role_old != b->conf.members[i].role_old)
			return false;
	}
	return true;
}

struct fuzz_snapshot_fill {
	struct kv *kv;
	uint64_t group;
};

static int fuzz_snapshot_fill(void *arg, struct fl_snapshot_writer *w)
{
	struct fuzz_snapshot_fill *f = arg;

	return kv_save(f->kv, f->group, w);
}

/* A restored map saves into a new file that restores to the same map. */
static void fuzz_snapshot_resave(int dir_fd, struct kv *kv, const struct snapshot_meta *meta)
{
	struct snapshot_meta again = *meta;
	struct fuzz_snapshot_fill fill = {kv, meta->group};
	struct kv_digest before, after;
	struct kv other;

	again.index = meta->index + 1;
	FUZZ_CHECK(snapshot_save(dir_fd, &again, fuzz_snapshot_fill, &fill) == 0);
	FUZZ_CHECK(kv_init(&other) == 0);
	FUZZ_CHECK(snapshot_restore(dir_fd, &again, kv_restore, &other) == 0);
	kv_digest_get(kv, meta->group, &before);
	kv_digest_get(&other, meta->group, &after);
	FUZZ_CHECK(memcmp(&before, &after, sizeof(before)) == 0);
	kv_deinit(&other);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t manifest[FUZZ_MANIFEST_SIZE_MAX];
	struct fuzz_in in = {data, size};
	uint8_t fix = fuzz_u8(&in);
	size_t manifest_size, file_size;
	const uint8_t *bytes =
	    fuzz_bytes(&in, fuzz_u16(&in) % FUZZ_MANIFEST_SIZE_MAX, &manifest_size);
	const uint8_t *file = fuzz_bytes(&in, in.size, &file_size);
	const char *dir = fuzz_dir();
	struct snapshot_meta meta = {.group = FUZZ_SNAPSHOT_GROUP,
				     .index = FUZZ_SNAPSHOT_INDEX_DEFAULT,
				     .size = file_size,
				     .checksum = XXH3_64bits(file, file_size)};
	char name[80];
	struct kv kv;
	int dir_fd, rv;

	fuzz_dir_clear(dir);
	memcpy(manifest, bytes, manifest_size);
	fuzz_snapshot_fix(manifest, &manifest_size, fix, file, file_size);
	snprintf(name, sizeof(name), "g%016llx.manifest", (unsigned long long)FUZZ_SNAPSHOT_GROUP);
	fuzz_write_file(dir, name, manifest, manifest_size);
	dir_fd = snapshot_dir_open(dir);
	FUZZ_CHECK(dir_fd >= 0);

	rv = snapshot_manifest_read(dir_fd, FUZZ_SNAPSHOT_GROUP, &meta);
	if (getenv("FUZZ_VERBOSE") != NULL)
		printf("manifest: %d, %u members\n", rv, rv == 0 ? meta.conf.members_count : 0);
	FUZZ_CHECK(rv == 0 || rv == -EBADMSG);
	if (rv == 0) {
		struct snapshot_meta again;

		FUZZ_CHECK(meta.group == FUZZ_SNAPSHOT_GROUP);
		FUZZ_CHECK(meta.conf.members_count <= RAFT_MEMBERS_MAX);
		FUZZ_CHECK(snapshot_manifest_write(dir_fd, &meta) == 0);
		FUZZ_CHECK(snapshot_manifest_read(dir_fd, FUZZ_SNAPSHOT_GROUP, &again) == 0);
		FUZZ_CHECK(fuzz_snapshot_same_meta(&meta, &again));
	}

	/* The file the manifest names (or a default one), restored. */
	snprintf(name, sizeof(name), "g%016llx-%016llx.snap", (unsigned long long)meta.group,
		 (unsigned long long)meta.index);
	fuzz_write_file(dir, name, file, file_size);
	FUZZ_CHECK(kv_init(&kv) == 0);
	rv = snapshot_restore(dir_fd, &meta, kv_restore, &kv);
	if (getenv("FUZZ_VERBOSE") != NULL)
		printf("restore of index %llu: %d, %llu keys\n", (unsigned long long)meta.index, rv,
		       (unsigned long long)kv_keys_count(&kv, meta.group));
	FUZZ_CHECK(rv == 0 || rv == -EBADMSG || rv == -ENOENT);
	if (rv == 0 && meta.index < UINT64_MAX)
		fuzz_snapshot_resave(dir_fd, &kv, &meta);
	kv_deinit(&kv);
	close(dir_fd);
	return 0;
}
