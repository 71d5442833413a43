#!/usr/bin/env bash
# peers-smoke: runs `compare --quick` (its path first, then its arguments)
# and checks that it printed the table with a figure in every column of
# every row (Flotilla embedded, Flotilla client, canonical/raft; the embedded
# shape runs no election trials). compare exits non-zero when a figure is
# missing.
set -euo pipefail

compare=$1
shift
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# canonical/raft on a loaded 2-core machine sometimes loses its leader or
# takes too long to elect one: try twice, and when only raft-peer runs failed
# both times, say so and skip (77) rather than fail Flotilla's suite.
for attempt in 1 2; do
	status=0
	"$compare" "$@" >"$out" 2>&1 || status=$?
	cat "$out"
	[ "$status" -eq 0 ] && break
	echo "peers-smoke: compare exited with status $status (attempt $attempt)" >&2
done
if [ "$status" -ne 0 ]; then
	if grep -q 'FAILED: raft-peer' "$out" && ! grep 'FAILED: ' "$out" | grep -qv 'FAILED: raft-peer'; then
		echo "peers-smoke: only canonical/raft's runs failed, twice: skipped" >&2
		exit 77
	fi
	exit 1
fi
if ! grep -Eq '^figure +Flotilla/embedded +Flotilla/client +canonical/raft +embedded/raft +client/raft$' "$out"; then
	echo "peers-smoke: no table header with every column" >&2
	exit 1
fi
# The rows: from the header to the line that explains the ratio. Their last
# five fields are Flotilla embedded, Flotilla client, canonical/raft and the
# two ratios.
rows=$(sed -n '/^figure /,/^ratio = /p' "$out" | sed '1d;$d')
if [ -z "$rows" ]; then
	echo "peers-smoke: the table has no rows" >&2
	exit 1
fi
if awk '$(NF-4) == "n/a" || $(NF-3) == "n/a" || $(NF-2) == "n/a" { bad = 1 } END { exit !bad }' <<<"$rows"; then
	echo "peers-smoke: a figure is missing in a column" >&2
	exit 1
fi
# Only the election rows are not run for the embedded shape ("-").
if awk '!/^election/ && ($(NF-4) == "-" || $(NF-3) == "-" || $(NF-2) == "-") { bad = 1 } END { exit !bad }' <<<"$rows"; then
	echo "peers-smoke: a shape was not run for a figure other than elections" >&2
	exit 1
fi
for figure in '128 B sat: entries/s' 'low load: commit p50 ms' 'low load: commit p99 ms'; do
	if ! grep -q "^$figure " <<<"$rows"; then
		echo "peers-smoke: no row '$figure'" >&2
		exit 1
	fi
done
echo "peers-smoke: $(wc -l <<<"$rows") figures, each for every shape it is run for"
