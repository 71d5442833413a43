/* flotilla-bench: every benchmark of every module in one program.
 *
 * Each module's bench/bench_<module>.c defines bench_<module>_register(), which
 * registers its cases with bench_register(). main() calls them all, then hands
 * the command line to Google Benchmark. Select cases with
 * --benchmark_filter=<regex> (e.g. '^wal/') and write results for comparison
 * with --benchmark_format=json or --benchmark_out=<file>. */
#include "bench/harness.h"

/* MODULES: one declaration and one call per bench/bench_<module>.c, matching the
 * sources list in bench/meson.build. Keep both lists in the same order. */
void bench_harness_register(void);
void bench_raft_register(void);
void bench_node_register(void);
void bench_wal_register(void);

int main(int argc, char **argv)
{
	bench_harness_register();
	bench_raft_register();
	bench_node_register();
	bench_wal_register();
	return bench_main(argc, argv);
}
