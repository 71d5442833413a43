/* err_str() names project codes and errno codes alike. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "base/err.h"

static void test_project_codes_have_names(void **state)
{
	(void)state;
	static const int codes[] = {WAL_ERR_CORRUPT,
				    RAFT_ERR_NOT_LEADER,
				    RAFT_ERR_TRANSFER,
				    RAFT_ERR_CONF_PENDING,
				    RAFT_ERR_CONF_INVALID,
				    RAFT_ERR_COMPACTED,
				    RAFT_ERR_UNAVAILABLE,
				    RAFT_ERR_NO_QUORUM,
				    WAL_ERR_FAILED,
				    WAL_ERR_GAP,
				    ERR_NO_GROUP,
				    ERR_STOPPING,
				    ERR_DROPPED,
				    ERR_GROUP_EXISTS,
				    ERR_DIVERGED,
				    ERR_NO_SPACE,
				    RAFT_ERR_REPAIRING,
				    ERR_INDETERMINATE,
				    ERR_DIR_IN_USE,
				    ERR_DIR_MISMATCH,
				    ERR_DIR_FOREIGN,
				    ERR_DIR_CORRUPT,
				    ERR_STALE};

	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		assert_string_not_equal(err_str(codes[i]), "unknown error");
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
