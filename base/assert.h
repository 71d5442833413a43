/* Assertions that survive release builds.
 *
 * ASSERT stays on in every build: use it for cheap checks of invariants.
 * DEBUG_ASSERT is compiled out when NDEBUG is set: use it for O(n) walks.
 * A failure prints file:line and the expression, then aborts. Assert bugs,
 * never operating conditions: a message from an old term is handled, a commit
 * index going backwards is a bug. */
#ifndef BASE_ASSERT_H
#define BASE_ASSERT_H

#include <assert.h>

_Noreturn void assert_fail(const char *file, int line, const char *expr);

#define ASSERT(expr)                                                                               \
	do {                                                                                       \
		if (__builtin_expect(!(expr), 0))                                                  \
			assert_fail(__FILE__, __LINE__, #expr);                                    \
	} while (0)

#ifdef NDEBUG
#define DEBUG_ASSERT(expr) ((void)0)
#else
#define DEBUG_ASSERT(expr) ASSERT(expr)
#endif

#endif /* BASE_ASSERT_H */
