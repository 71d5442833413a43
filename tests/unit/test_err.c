/* err_str() names project codes and errno codes alike. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "engine/err.h"

static void test_project_codes_have_names(void **state)
{
	(void)state;
	for (int code = -(ERR_BASE + 1); code > ERR_LAST; code--)
		assert_string_not_equal(err_str(code), "unknown error");
}

static void test_errno_codes_use_strerror(void **state)
{
	(void)state;
	assert_string_equal(err_str(-ENOSPC), strerror(ENOSPC));
	assert_string_equal(err_str(0), "success");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_project_codes_have_names),
	    cmocka_unit_test(test_errno_codes_use_strerror),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
