/* Replays a fuzz corpus without libFuzzer: each argument is a file or a
 * directory of files, and each file is one input handed to the target's
 * LLVMFuzzerTestOneInput(). Built with any compiler, so the checked-in
 * corpus (and every crash input added to it) runs as a regular test in
 * every build, with or without sanitizers. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/fuzz/fuzz.h"

#define REPLAY_INPUT_SIZE_MAX (1u << 20)

static int replay_file(const char *path, uint32_t *count)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	size_t size;

	if (f == NULL) {
		fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
		return -1;
	}
	buf = malloc(REPLAY_INPUT_SIZE_MAX);
	if (buf == NULL) {
		fclose(f);
		return -1;
	}
	size = fread(buf, 1, REPLAY_INPUT_SIZE_MAX, f);
	fclose(f);
	/* An exact-size copy, so that reading past the input is caught. */
	uint8_t *input = malloc(size ? size : 1);

	if (input == NULL) {
		free(buf);
		return -1;
	}
	memcpy(input, buf, size);
	free(buf);
	printf("replay: %s (%zu bytes)\n", path, size);
	fflush(stdout);
	LLVMFuzzerTestOneInput(input, size);
	free(input);
	(*count)++;
	return 0;
}

static int replay_name_compare(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int replay_dir(const char *path, uint32_t *count)
{
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	DIR *dir = opendir(path);
	int rv = 0;

	if (dir == NULL) {
		fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
		return -1;
	}
	while ((e = readdir(dir)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			names = realloc(names, cap * sizeof(*names));
			if (names == NULL)
				abort();
		}
		names[n] = malloc(strlen(path) + strlen(e->d_name) + 2);
		if (names[n] == NULL)
			abort();
		sprintf(names[n], "%s/%s", path, e->d_name);
		n++;
	}
	closedir(dir);
	if (n > 0)
		qsort(names, n, sizeof(*names), replay_name_compare);
	for (size_t i = 0; i < n; i++) {
		if (rv == 0)
			rv = replay_file(names[i], count);
		free(names[i]);
	}
	free(names);
	return rv;
}

int main(int argc, char **argv)
{
	uint32_t count = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: %s FILE_OR_DIR...\n", argv[0]);
		return 2;
	}
	for (int i = 1; i < argc; i++) {
		struct stat st;
		int rv;

		if (stat(argv[i], &st) != 0) {
			fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
			return 1;
		}
		rv = S_ISDIR(st.st_mode) ? replay_dir(argv[i], &count)
					 : replay_file(argv[i], &count);
		if (rv != 0)
			return 1;
	}
	if (count == 0) {
		fprintf(stderr, "replay: no inputs\n");
		return 1;
	}
	printf("replay: %u inputs, no crash\n", count);
	return 0;
}
