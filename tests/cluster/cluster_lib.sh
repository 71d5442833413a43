# Sourced by the cluster tests: what each would otherwise write out. The
# caller sets cluster (tools/cluster), dir (the cluster's directory) and
# failed (non-zero until the test passes).

step() {
	echo "== $(date +%T) $*"
}

# skip_without COMMAND: end the test as skipped (status 77) when COMMAND is
# not installed.
skip_without() {
	command -v "$1" >/dev/null && return 0
	echo "$1 not found: skipped"
	failed=0
	exit 77
}

# cluster_stop_and_show LINES [FILE...]: stop every node of $dir by PID; if
# the test failed, show the last LINES lines of each node's log and of each
# FILE; then remove $dir.
cluster_stop_and_show() {
	local lines=$1 log
	shift
	"$cluster" stop --dir "$dir" --wait "${stop_wait:-10}" >/dev/null 2>&1 || true
	if [ "$failed" -ne 0 ]; then
		for log in "$dir"/node-*.log "$@"; do
			[ -f "$log" ] || continue
			echo "---- last lines of $(basename "$log")"
			tail -n "$lines" "$log"
		done
	fi
	rm -rf "$dir"
}

# expect RC PATTERN COMMAND...: run COMMAND with its standard output in
# $dir/out.txt and its standard error in $dir/err.txt (a JSON document is
# then out.txt alone), show both, and fail the test unless it exits RC and
# PATTERN (grep -E) is in one of them.
expect() {
	local want=$1 pattern=$2 rc=0
	shift 2
	"$@" >"$dir/out.txt" 2>"$dir/err.txt" || rc=$?
	sed 's/^/    /' "$dir/out.txt" "$dir/err.txt"
	if [ "$rc" -ne "$want" ]; then
		echo "FAIL: exit status $rc, not $want: $*"
		exit 1
	fi
	if ! grep -qhE -- "$pattern" "$dir/out.txt" "$dir/err.txt"; then
		echo "FAIL: no '$pattern' in the output of: $*"
		exit 1
	fi
}

# cluster_stop_clean ID...: stop every node of $dir by PID (SIGTERM), then
# fail the test unless the log of each node ID ends with its exit line and
# no node's log holds a sanitizer report or a store's order error.
cluster_stop_clean() {
	local id
	"$cluster" stop --dir "$dir"
	for id in "$@"; do
		if ! tail -n 5 "$dir/node-$id.log" | grep -q "node $id: exiting"; then
			echo "node $id did not exit cleanly"
			exit 1
		fi
	done
	if grep -l -E "AddressSanitizer|LeakSanitizer|runtime error:|kv: group .* applied index" \
		"$dir"/node-*.log; then
		echo "a node reported an error (above)"
		exit 1
	fi
}

# cluster_tls_env DIR: the client tools of a test speak to the cluster in
# DIR as it expects. A TLS cluster (tools/cluster keeps its certificates in
# DIR/tls) is spoken to with the admin certificate: FLOTILLA_TLS_CA,
# FLOTILLA_TLS_CERT and FLOTILLA_TLS_KEY are exported, and flotilla-admin,
# flotilla-load, the C test clients and the Python ones read them. A
# plaintext cluster: they are unset.
cluster_tls_env() {
	local tls=$1/tls
	if [ -f "$tls/ca.pem" ]; then
		export FLOTILLA_TLS_CA="$tls/ca.pem" FLOTILLA_TLS_CERT="$tls/admin.pem" \
			FLOTILLA_TLS_KEY="$tls/admin.key"
	else
		unset FLOTILLA_TLS_CA FLOTILLA_TLS_CERT FLOTILLA_TLS_KEY
	fi
}

# cluster_start_random START_ARGS...: tools/cluster start --dir $dir
# --base-port B START_ARGS, B from tools/cluster pick-port (below the
# ephemeral ports, so a restarted node finds its port free). A node whose
# port is taken exits with status 3: then the cluster is started again
# elsewhere, five tries in all. Status 4 means io_uring is not available:
# the test is skipped (exit 77). Sets base, and the TLS variables of
# cluster_tls_env.
cluster_start_random() {
	local attempt rc
	for attempt in 1 2 3 4 5; do
		base=$("$cluster" pick-port)
		rc=0
		"$cluster" start --dir "$dir" --base-port "$base" "$@" || rc=$?
		if [ "$rc" -eq 0 ]; then
			cluster_tls_env "$dir"
			return 0
		fi
		if [ "$rc" -eq 4 ]; then
			echo "io_uring is not available here: skipped"
			failed=0
			exit 77
		fi
		if [ "$rc" -ne 3 ] || [ "$attempt" -eq 5 ]; then
			echo "cluster start failed with status $rc"
			exit 1
		fi
		echo "ports near $base in use: trying others"
		rm -rf "$dir"/node-*
	done
}

# pick_subnet: prints A.B.C of a /24 of 10.0.0.0/8 that no route of this
# host covers (for the network-namespace tests).
pick_subnet() {
	local a b
	for _ in $(seq 20); do
		a=$((100 + RANDOM % 150)) b=$((RANDOM % 250))
		if ! ip route show to match "10.$a.$b.1" | grep -qv '^default'; then
			echo "10.$a.$b"
			return 0
		fi
	done
	return 1
}
