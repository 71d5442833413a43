/* Public entry points of include/flotilla.h that need no running node. */
#include "engine/err.h"
#include "flotilla.h"

#define STR2(x) #x
#define STR(x)  STR2(x)

const char *fl_strerror(int err)
{
	return err_str(err);
}

const char *fl_version(void)
{
	return STR(FLOTILLA_VERSION_MAJOR) "." STR(FLOTILLA_VERSION_MINOR) "." STR(
	    FLOTILLA_VERSION_PATCH);
}
