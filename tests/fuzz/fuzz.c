/* Scratch files of the fuzz targets: see fuzz.h. */
#include "tests/fuzz/fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

static char fuzz_dir_path[4096];

static void fuzz_dir_remove(void)
{
	if (fuzz_dir_path[0] == '\0')
		return;
	fuzz_dir_clear(fuzz_dir_path);
	rmdir(fuzz_dir_path);
}

const char *fuzz_dir(void)
{
	const char *base = getenv("TMPDIR");

	if (fuzz_dir_path[0] != '\0')
		return fuzz_dir_path;
	if (base == NULL || base[0] == '\0')
		base = P_tmpdir;
	snprintf(fuzz_dir_path, sizeof(fuzz_dir_path), "%s/flotilla-fuzz-XXXXXX", base);
	if (mkdtemp(fuzz_dir_path) == NULL) {
		fprintf(stderr, "fuzz: cannot make a directory in %s: %s\n", base, strerror(errno));
		abort();
	}
	atexit(fuzz_dir_remove);
	return fuzz_dir_path;
}

/* Remove what path holds, subdirectories included (a WAL moves files it
 * cannot identify into damaged/): every input starts from an empty
 * directory, or one input's files would change what the next one finds. */
static void fuzz_dir_clear_depth(const char *path, int depth)
{
	DIR *dir = opendir(path);
	struct dirent *e;

	if (dir == NULL)
		return;
	while ((e = readdir(dir)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (unlinkat(dirfd(dir), e->d_name, 0) != 0 &&
		    (errno == EISDIR || errno == EPERM) && depth < 4) {
			char sub[4096 + 256];

			snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
			fuzz_dir_clear_depth(sub, depth + 1);
			unlinkat(dirfd(dir), e->d_name, AT_REMOVEDIR);
		}
	}
	closedir(dir);
}

void fuzz_dir_clear(const char *path)
{
	fuzz_dir_clear_depth(path, 0);
}

void fuzz_write_file(const char *dir, const char *name, const void *data, size_t size)
{
	char path[4096 + 256];
	const uint8_t *p = data;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	FUZZ_CHECK(fd >= 0);
	while (size > 0) {
		ssize_t n = write(fd, p, size);

		FUZZ_CHECK(n > 0);
		p += n;
		size -= (size_t)n;
	}
	close(fd);
}
