/* The one place an assertion failure is reported. */
#include "base/assert.h"

#include <stdio.h>
#include <stdlib.h>

void assert_fail(const char *file, int line, const char *expr)
{
	fprintf(stderr, "%s:%d: assertion failed: %s\n", file, line, expr);
	fflush(stderr);
	abort();
}
