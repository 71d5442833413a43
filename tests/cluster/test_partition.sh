#!/usr/bin/env bash
# Partition test: five flotilla-node processes under a checked load while
# the network splits, nodes are cut off, killed (-9) and restarted from their
# data, and paused (SIGSTOP/SIGCONT). At the end every fault is healed, the
# load runs on a while, and the history of every key must be linearizable
# (flotilla-load --check). Then the checker is shown the same history with
# one acknowledged write left out, and must catch it.
#
#   test_partition.sh FLOTILLA_NODE FLOTILLA_LOAD PROXY TOOLS_CLUSTER WORK_DIR
#                     [FAULT_S [CALM_S]] [-- extra flotilla-node flags]
#
# Network: as root with `ip netns`, each node runs in a network namespace of
# its own (named after this script's PID), on a veth pair whose host end is
# on a bridge that the load driver reaches from here. A partition is a
# blackhole route in each node's namespace to each node across the cut; an
# isolated node has its veth set down. Otherwise it falls back to 127.0.0.x
# addresses with PROXY (partition_proxy.py) between every two nodes, and
# says so; FLOTILLA_PARTITION_MODE=proxy forces that fallback.
#
# Faults, in turn until FAULT_S (30) seconds have passed, each for 2-4 s with
# a second of calm between: split 2|3, isolate one node, kill -9 one node
# and restart it, pause one node. Then CALM_S (10) seconds without faults.
#
# The nodes are started and stopped by tools/cluster, with a layout file
# that puts each node in its namespace, or on its 127.0.0.x address with
# its peers reached through the proxy. It signals only the PIDs it started,
# and removes every namespace, link and file it created, on every exit path.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/cluster_lib.sh" # pick_subnet

node_bin=$(realpath "$1") load_bin=$(realpath "$2") proxy=$(realpath "$3")
cluster=$(realpath "$4") work_dir=$5
shift 5
fault_s=30 calm_s=10
if [ $# -gt 0 ] && [ "$1" != -- ]; then fault_s=$1 && shift; fi
if [ $# -gt 0 ] && [ "$1" != -- ]; then calm_s=$1 && shift; fi
if [ $# -gt 0 ] && [ "$1" = -- ]; then shift; fi
node_flags=("$@")
nodes=5 groups=50 keys=100
tag=fp$$ # Names of namespaces and links: at most 15 bytes.

mkdir -p "$work_dir"
dir=$(mktemp -d "$(realpath "$work_dir")/partition.XXXXXX")
proxy_pid='' load_pid='' mode='' failed=1 netns_made=() links_made=()

say() {
	echo "== $(date +%T) $*"
}

cleanup() {
	local pid
	set +e
	stop_cluster
	for pid in $proxy_pid $load_pid; do
		kill -KILL "$pid" 2>/dev/null
	done
	for pid in $proxy_pid $load_pid; do
		wait "$pid" 2>/dev/null
	done
	teardown_netns
	if [ "$failed" -ne 0 ]; then
		for log in "$dir"/node-*.log "$dir"/proxy.log; do
			[ -f "$log" ] || continue
			echo "---- last lines of $(basename "$log")"
			tail -n 15 "$log"
		done
	fi
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- The network: namespaces, or 127.0.0.x and the proxy. ---

addr=() # addr[i]: node i's address
ctl_port=

can_netns() {
	[ "${FLOTILLA_PARTITION_MODE:-}" != proxy ] && [ "$(id -u)" = 0 ] &&
		command -v ip >/dev/null && ip netns add "$tag-probe" 2>/dev/null &&
		ip netns del "$tag-probe"
}

setup_netns() {
	local i net ns
	net=$(pick_subnet) || return 1
	ip link add "${tag}b" type bridge || return 1
	links_made+=("${tag}b")
	ip addr add "$net.254/24" dev "${tag}b" && ip link set "${tag}b" up || return 1
	for i in $(seq "$nodes"); do
		ns=$tag-$i
		ip netns add "$ns" || return 1
		netns_made+=("$ns")
		ip link add "${tag}h$i" type veth peer name "${tag}n$i" || return 1
		links_made+=("${tag}h$i")
		ip link set "${tag}n$i" netns "$ns" && ip link set "${tag}h$i" master "${tag}b" up &&
			ip -n "$ns" addr add "$net.$i/24" dev "${tag}n$i" &&
			ip -n "$ns" link set "${tag}n$i" up && ip -n "$ns" link set lo up || return 1
		addr[i]=$net.$i
	done
	base_port=7000
	cat >"$dir/layout.sh" <<EOF
node_host() { echo "$net.\$1"; }
node_exec() { echo "ip netns exec $tag-\$1"; }
EOF
}

teardown_netns() {
	local i
	for i in "${links_made[@]}"; do ip link del "$i" 2>/dev/null || true; done
	for i in "${netns_made[@]}"; do ip netns del "$i" 2>/dev/null || true; done
	links_made=() netns_made=()
}

# Whether node 1 is reachable from here (the load) and from node 2's
# namespace (the other nodes): a bridge may filter forwarded packets.
netns_reaches() {
	timeout 3 bash -c "exec 3<>/dev/tcp/${addr[1]}/$(client_port 1)" 2>/dev/null &&
		timeout 3 ip netns exec "$tag-2" \
			bash -c "exec 3<>/dev/tcp/${addr[1]}/$(client_port 1)" 2>/dev/null
}

setup_proxy() {
	local i j routes=()
	command -v python3 >/dev/null || {
		echo "neither network namespaces nor python3 (for the proxy): skipped"
		failed=0
		exit 77
	}
	# Node i listens on 127.0.0.(10+i) at its tools/cluster ports (base + 0..9)
	# and reaches node j through the proxy at 127.0.0.(10+i):base+10+j.
	cat >"$dir/layout.sh" <<'EOF'
node_host() { echo "127.0.0.$((10 + $1))"; }
node_peer_addr() { echo "127.0.0.$((10 + $1)):$((base_port + 10 + $2))"; }
EOF
	for _ in 1 2 3 4 5; do
		base_port=$("$cluster" pick-port 20)
		ctl_port=$((base_port + 19))
		routes=()
		for i in $(seq "$nodes"); do
			addr[i]=127.0.0.$((10 + i))
			for j in $(seq "$nodes"); do
				[ "$i" = "$j" ] && continue
				routes+=("$i-$j=127.0.0.$((10 + i)):$((base_port + 10 + j))>127.0.0.$((10 + j)):$(peer_port "$j")")
			done
		done
		python3 "$proxy" "$ctl_port" "${routes[@]}" >"$dir/proxy.log" 2>&1 &
		proxy_pid=$!
		for _ in $(seq 100); do
			grep -q '^ready' "$dir/proxy.log" && return 0
			kill -0 "$proxy_pid" 2>/dev/null || break
			sleep 0.05
		done
		wait "$proxy_pid" 2>/dev/null || true
		proxy_pid=
	done
	echo "the proxy did not start"
	return 1
}

proxy_cmd() {
	local reply
	exec 3<>"/dev/tcp/127.0.0.1/$ctl_port"
	echo "$*" >&3
	read -r reply <&3
	exec 3<&-
	[ "$reply" = ok ] || {
		echo "proxy: $reply"
		return 1
	}
}

# Cut (or mend, with del) the link between nodes i and j, both ways.
cut_pair() { # add|del i j
	local op=$1 i=$2 j=$3
	if [ "$mode" = netns ]; then
		ip -n "$tag-$i" route "$op" blackhole "${addr[j]}/32"
		ip -n "$tag-$j" route "$op" blackhole "${addr[i]}/32"
	else
		local verb=unblock
		[ "$op" = add ] && verb=block
		proxy_cmd "$verb $i-$j"
		proxy_cmd "$verb $j-$i"
	fi
}

# Cut node i off from every node (and, with namespaces, from the load too).
isolate() { # on|off i
	local i=$2 j
	if [ "$mode" = netns ]; then
		ip link set "${tag}h$i" "$([ "$1" = on ] && echo down || echo up)"
	else
		for j in $(seq "$nodes"); do
			[ "$i" = "$j" ] || cut_pair "$([ "$1" = on ] && echo add || echo del)" "$i" "$j"
		done
	fi
}

# --- Nodes. ---

peer_port() { echo $((base_port + 2 * ($1 - 1))); } # As tools/cluster numbers them.
client_port() { echo $((base_port + 2 * ($1 - 1) + 1)); }

node_pid() { # i
	cat "$dir/node-$1.pid"
}

# Start node i (every node, without one) through tools/cluster, which waits
# for each ready line.
start_nodes() { # [i]
	local only=() i rc=0
	[ $# -gt 0 ] && only=(--node "$1")
	for i in ${1:-$(seq "$nodes")}; do
		echo "---- start $(date +%T)" >>"$dir/node-$i.log"
	done
	"$cluster" start --dir "$dir" --nodes "$nodes" --groups "$groups" --shards 2 \
		--base-port "$base_port" --bin "$node_bin" --layout "$dir/layout.sh" "${only[@]}" \
		-- --election-ms 1000 --heartbeat-ms 100 --snapshot-entries 2000 "${node_flags[@]}" ||
		rc=$?
	case $rc in
	0) cluster_tls_env "$dir" ;;
	4)
		echo "io_uring is not available here: skipped"
		failed=0
		exit 77
		;;
	*)
		echo "starting nodes ${1:-1..$nodes} failed with status $rc"
		exit 1
		;;
	esac
}

# --- Faults. ---

declare -A faults=([split]=0 [isolate]=0 [kill]=0 [pause]=0)

random_node() {
	echo $((1 + RANDOM % nodes))
}

fault_split() {
	local a b others=() i j hold=$((2 + RANDOM % 3))
	a=$(random_node)
	b=$(random_node)
	while [ "$b" = "$a" ]; do b=$(random_node); done
	for i in $(seq "$nodes"); do
		[ "$i" = "$a" ] || [ "$i" = "$b" ] || others+=("$i")
	done
	say "fault: split {$a,$b} | {${others[*]}} for $hold s"
	for j in "${others[@]}"; do cut_pair add "$a" "$j" && cut_pair add "$b" "$j"; done
	sleep "$hold"
	for j in "${others[@]}"; do cut_pair del "$a" "$j" && cut_pair del "$b" "$j"; done
	faults[split]=$((faults[split] + 1))
}

fault_isolate() {
	local i hold=$((2 + RANDOM % 3))
	i=$(random_node)
	say "fault: isolate node $i for $hold s"
	isolate on "$i"
	sleep "$hold"
	isolate off "$i"
	faults[isolate]=$((faults[isolate] + 1))
}

fault_kill() {
	local i down=$((1 + RANDOM % 3))
	i=$(random_node)
	say "fault: kill -9 node $i (pid $(node_pid "$i")), restart it after $down s"
	kill -KILL "$(node_pid "$i")"
	sleep "$down"
	start_nodes "$i"
	faults[kill]=$((faults[kill] + 1))
}

fault_pause() {
	local i hold=$((2 + RANDOM % 3))
	i=$(random_node)
	say "fault: pause node $i (pid $(node_pid "$i")) for $hold s"
	kill -STOP "$(node_pid "$i")"
	sleep "$hold"
	kill -CONT "$(node_pid "$i")"
	faults[pause]=$((faults[pause] + 1))
}

# --- The test. ---

start_cluster() {
	say "start $nodes nodes, $groups groups of $nodes voters"
	start_nodes
}

# Stop every node at once (SIGCONT for a paused one, then SIGTERM and at once
# SIGKILL) and forget them.
stop_cluster() {
	local i
	[ -f "$dir/cluster.conf" ] || return 0
	for i in $(seq "$nodes"); do
		if [ -f "$dir/node-$i.pid" ]; then kill -CONT "$(node_pid "$i")" 2>/dev/null || true; fi
	done
	"$cluster" stop --dir "$dir" --wait 0 >/dev/null 2>&1 || true
	rm -rf "$dir"/node-* "$dir/cluster.conf"
}

mode=proxy
if ! can_netns; then
	say "network: no network namespaces here (needs root and ip netns):" \
		"falling back to 127.0.0.x and a fault-injecting proxy between nodes"
elif ! setup_netns; then
	say "network: could not build the namespaces' network:" \
		"falling back to 127.0.0.x and a fault-injecting proxy between nodes"
	teardown_netns
else
	mode=netns
	say "network: namespaces $tag-1..$nodes on bridge ${tag}b, nodes at ${addr[1]}..${addr[$nodes]}"
	start_cluster
	if ! netns_reaches; then
		say "network: the namespaces cannot reach each other (a filtering bridge?):" \
			"falling back to 127.0.0.x and a fault-injecting proxy between nodes"
		stop_cluster
		teardown_netns
		mode=proxy
	fi
fi
if [ "$mode" = proxy ]; then
	setup_proxy
	start_cluster
fi

load_nodes=()
for i in $(seq "$nodes"); do load_nodes+=(--node "$i=${addr[i]}:$(client_port "$i")"); done
duration=$((fault_s + calm_s))
say "load: $duration s, $keys keys over $groups groups, checked"
"$load_bin" "${load_nodes[@]}" --groups "$groups" --keys "$keys" --mode closed \
	--concurrency 64 --threads 2 --duration "$duration" --warmup 0 --read-ratio 0.5 \
	--value-size 32 --timeout-ms 1500 --redirects-max 20 --seed $$ \
	--check --check-history "$dir/history" --json "$dir/load.json" >"$dir/load.out" 2>&1 &
load_pid=$!

sleep 2 # Leader discovery, and some load before the first fault.
fault_end=$((SECONDS + fault_s - 2))
kinds=(split isolate kill pause)
round=$((RANDOM % 4))
while [ $SECONDS -lt $fault_end ]; do
	"fault_${kinds[round % 4]}"
	round=$((round + 1))
	sleep 1
done
say "healed: no more faults; the load runs on for about $calm_s s"
if [ "$mode" = proxy ]; then proxy_cmd heal; fi

status=0
wait "$load_pid" || status=$?
load_pid=
grep -v '^ *[0-9.]*s ' "$dir/load.out" || true # The report, without the progress lines.
"$cluster" status --dir "$dir" >/dev/null || {
	"$cluster" status --dir "$dir"
	echo "a node died (above)"
	exit 1
}
if grep -l -E "AddressSanitizer|LeakSanitizer|runtime error:|kv: group .* applied index" \
	"$dir"/node-*.log; then
	echo "a node reported an error (above)"
	exit 1
fi

histories=$(sed -n 's/.*"keys": \([0-9]*\).*/\1/p' "$dir/load.json" | tail -n 1)
ops=$(sed -n 's/.*"operations": \([0-9]*\).*/\1/p' "$dir/load.json")
ops_max=$(sed -n 's/.*"ops_max_per_key": \([0-9]*\).*/\1/p' "$dir/load.json")
unknown=$(sed -n 's/.*"unknown_outcome": \([0-9]*\).*/\1/p' "$dir/load.json")
violations=$(sed -n 's/.*"violations": \([0-9]*\).*/\1/p' "$dir/load.json")
say "summary ($mode): ${histories:-?} histories (one per key), ${ops:-?} operations" \
	"(${unknown:-?} of unknown outcome), at most ${ops_max:-?} on one key;" \
	"faults: ${faults[split]} splits, ${faults[isolate]} isolations, ${faults[kill]} kills," \
	"${faults[pause]} pauses; violations: ${violations:-?}"
case $status in
0) ;;
3)
	echo "FAIL: the history is not linearizable (the violations are above)"
	exit 1
	;;
*)
	echo "FAIL: flotilla-load exited with status $status"
	exit 1
	;;
esac

say "the checker on the same history, one acknowledged write left out"
status=0
FLOTILLA_LOAD_CHECK_DROP_WRITE=1 "$load_bin" --check-file "$dir/history" >"$dir/broken.out" 2>&1 ||
	status=$?
cat "$dir/broken.out"
if [ "$status" -ne 3 ]; then
	echo "FAIL: the checker missed a dropped write (status $status)"
	exit 1
fi
failed=0
say "partition test passed"
