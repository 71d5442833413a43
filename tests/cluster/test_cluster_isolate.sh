#!/usr/bin/env bash
# Isolate check: quiesced groups whose leader's host is cut off the network
# (its link down; it keeps running and keeps its sockets) must take writes
# through the majority within 3 heartbeat intervals (host liveness suspects
# the node) + 1 s of the cut, and every group must take a write within the
# same bound of the heal; no acknowledged write may be lost
# (flotilla-cluster-check isolate). The election timeout (2 s) is far above
# that bound: a group that waited for its own timer instead of the host's
# suspicion (3 heartbeats of 50 ms) would fail it.
#
#   test_cluster_isolate.sh FLOTILLA_NODE CLUSTER_CHECK TOOLS_CLUSTER WORK_DIR GROUPS
#
# Needs root and `ip netns` (else skipped, exit 77): each of the 3 nodes runs
# in a network namespace of its own, named after this script's PID, on a
# veth pair whose host end is on a bridge with an address of the same
# private /24, through which the checker reaches the nodes' client ports. A
# cut sets the node's host-side veth down, a heal sets it up. tools/cluster
# places the nodes with a layout file and stops them by PID; every
# namespace, link and file made here is removed on every exit path.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/cluster_lib.sh"

node_bin=$(realpath "$1") check_bin=$(realpath "$2") cluster=$(realpath "$3") work_dir=$4
groups=$5
election_ms=2000 heartbeat_ms=50 nodes=3
tag=fi$$ # Names of namespaces and links: at most 15 bytes.

if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null ||
	! ip netns add "$tag-probe" 2>/dev/null || ! ip netns del "$tag-probe"; then
	echo "needs root and ip netns (network namespaces): skipped"
	exit 77
fi

mkdir -p "$work_dir"
dir=$(mktemp -d "$(realpath "$work_dir")/cluster-isolate.XXXXXX")
failed=1 netns_made=() links_made=()

cleanup() {
	local i
	set +e
	cluster_stop_and_show 20
	for i in "${links_made[@]}"; do ip link del "$i" 2>/dev/null; done
	for i in "${netns_made[@]}"; do ip netns del "$i" 2>/dev/null; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The bridge, and each node's namespace with a veth pair to it. Returns 1
# when this host cannot build it (then the test is skipped).
setup_netns() {
	local i ns
	net=$(pick_subnet) || return 1
	ip link add "${tag}b" type bridge || return 1
	links_made+=("${tag}b")
	ip addr add "$net.254/24" dev "${tag}b" || return 1
	ip link set "${tag}b" up || return 1
	for i in $(seq "$nodes"); do
		ns=$tag-$i
		ip netns add "$ns" || return 1
		netns_made+=("$ns")
		ip link add "${tag}h$i" type veth peer name "${tag}n$i" || return 1
		links_made+=("${tag}h$i")
		ip link set "${tag}n$i" netns "$ns" || return 1
		ip link set "${tag}h$i" master "${tag}b" up || return 1
		ip -n "$ns" addr add "$net.$i/24" dev "${tag}n$i" || return 1
		ip -n "$ns" link set "${tag}n$i" up || return 1
		ip -n "$ns" link set lo up || return 1
	done
}

step "network: namespaces $tag-1..$nodes on bridge ${tag}b"
if ! setup_netns; then
	echo "could not build the namespaces' network here: skipped"
	failed=0
	exit 77
fi
cat >"$dir/layout.sh" <<EOF
node_host() { echo "$net.\$1"; }
node_exec() { echo "ip netns exec $tag-\$1"; }
EOF
cat >"$dir/fault.sh" <<EOF
#!/usr/bin/env bash
# fault.sh cut|heal ID: node ID's host-side link down or up.
set -eu
case "\$1" in
cut) ip link set "${tag}h\$2" down ;;
heal) ip link set "${tag}h\$2" up ;;
*) exit 2 ;;
esac
EOF
chmod +x "$dir/fault.sh"

step "start $nodes nodes, $groups groups, quiescence on, election timeout $election_ms ms," \
	"heartbeat $heartbeat_ms ms"
cluster_start_random --groups "$groups" --nodes "$nodes" --layout "$dir/layout.sh" \
	--bin "$node_bin" -- --election-ms "$election_ms" --heartbeat-ms "$heartbeat_ms" \
	--quiesce on
spec=""
for i in $(seq "$nodes"); do
	spec+="${spec:+,}$i=$net.$i:$((base + 2 * (i - 1) + 1))"
done

# A bridge may filter forwarded packets (br_netfilter): then nothing here
# can be checked.
if ! timeout 3 bash -c "exec 3<>/dev/tcp/$net.1/$((base + 1))" 2>/dev/null ||
	! timeout 3 ip netns exec "$tag-2" bash -c "exec 3<>/dev/tcp/$net.1/$((base + 1))" \
		2>/dev/null; then
	echo "the namespaces cannot reach each other over the bridge (filtered?): skipped"
	failed=0
	exit 77
fi

step "write to every group, let them quiesce, cut off the busiest leader, heal it"
"$check_bin" isolate --nodes "$spec" --groups "$groups" --fault "$dir/fault.sh" \
	--election-ms "$election_ms" --heartbeat-ms "$heartbeat_ms"

step "stop"
"$cluster" stop --dir "$dir"
failed=0
step "isolate check passed"
