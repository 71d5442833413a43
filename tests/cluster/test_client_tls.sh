#!/usr/bin/env bash
# TLS on the client port and the two client roles, against three
# flotilla-node processes of a default (TLS) tools/cluster cluster
# (certificates from tools/tls-certs in its directory):
#
#   - a data certificate's PUT and GET work; its DROP, REMOVE_MEMBER,
#     TRANSFER and JOIN get FORBIDDEN (13) naming the op and the role, on a
#     connection that stays open; flotilla-admin with it is told why;
#   - the admin certificate does all four;
#   - refused, each with the client's sentence and the node's log line: no
#     client certificate, a certificate of another CA, an expired one, a node's,
#     a client that does not trust the node's CA, a plaintext client (which
#     gets one plaintext ERROR answer); a handshake never begun is closed at
#     --client-handshake-ms; both counted in GET /metrics;
#   - flotilla-load with --tls-* flags runs;
#   - SIGHUP: new files from the same CA are served to new connections; with
#     a broken key the reload fails with a log line and the old ones stay.
#
#   test_client_tls.sh FLOTILLA_NODE FLOTILLA_ROLES FLOTILLA_ADMIN FLOTILLA_LOAD TLS_CERTS
#
# The nodes are stopped by PID (tools/cluster stop) on every exit.
set -euo pipefail

here=$(dirname "${BASH_SOURCE[0]}")
source "$here/cluster_lib.sh"

node_bin=$1 roles=$2 admin=$3 load=$4 tls_certs=$5
cluster="$here/../../tools/cluster"
dir=$(mktemp -d "${TMPDIR:-/tmp}/flotilla-tls.XXXXXX")
failed=1
cleanup() {
	cluster_stop_and_show 30
}
trap cleanup EXIT

skip_without openssl

step "start 3 nodes with TLS (tools/cluster's certificates), 2 groups"
cluster_start_random --groups 2 --nodes 3 --shards 1 --metrics --bin "$node_bin" -- \
	--client-threads 1 --client-handshake-ms 1000
# Each client below names the certificate it shows: none from the
# environment (cluster_tls_env exported the admin's).
unset FLOTILLA_TLS_CA FLOTILLA_TLS_CERT FLOTILLA_TLS_KEY
certs="$dir/tls"
step "certificates: an expired data one of the cluster's CA; another CA"
"$tls_certs" ca "$dir/other" >/dev/null
"$tls_certs" client "$dir/other" rogue admin >/dev/null
"$tls_certs" client "$certs" old data --expired >/dev/null

addr() { echo "127.0.0.1:$((base + 2 * ($1 - 1) + 1))"; }
log() { echo "$dir/node-$1.log"; }
if grep -q "TLS is off" "$(log 1)" || ! grep -q "client TLS 1.3 on" "$(log 1)"; then
	echo "FAIL: node 1 did not turn client TLS on"
	exit 1
fi

as_data=(env FLOTILLA_TLS_CA="$certs/ca.pem" FLOTILLA_TLS_CERT="$certs/data.pem"
	FLOTILLA_TLS_KEY="$certs/data.key")
as_admin=(env FLOTILLA_TLS_CA="$certs/ca.pem" FLOTILLA_TLS_CERT="$certs/admin.pem"
	FLOTILLA_TLS_KEY="$certs/admin.key")

# leader_of G: the node leading group G (asked of node 1 as admin), within 20 s.
leader_of() {
	local leader
	for _ in $(seq 40); do
		leader=$("${as_admin[@]}" "$roles" "$(addr 1)" "LEADER:$1" |
			sed -n 's/^LEADER status 0 leader \([1-9][0-9]*\):.*/\1/p')
		[ -z "$leader" ] || {
			echo "$leader"
			return 0
		}
		sleep 0.5
	done
	echo "FAIL: group $1 has no leader" >&2
	return 1
}

# Flip the roles' answers into an expected pattern: fail unless every line
# in $dir/out.txt matching $2 has status $1.
statuses() {
	local want=$1 op
	shift
	for op in "$@"; do
		if ! grep -qE "^$op status $want " "$dir/out.txt"; then
			echo "FAIL: $op did not answer status $want"
			exit 1
		fi
	done
}

leader1=$(leader_of 1)
leader2=$(leader_of 2)
other1=$((leader1 % 3 + 1))
other2=$((leader2 % 3 + 1))
echo "group 1 led by node $leader1, group 2 by node $leader2"

step "data role: PUT and GET work; DROP, REMOVE_MEMBER, TRANSFER, JOIN are FORBIDDEN"
expect 0 "DROP status 13 leader 0: DROP needs the admin role; this connection's certificate has the data role" \
	"${as_data[@]}" "$roles" "$(addr "$leader1")" PUT:1 GET:1 DROP:1 "REMOVE_MEMBER:1:$other1" \
	"TRANSFER:1:$other1" JOIN:7 GET:1
statuses 0 PUT
statuses 13 DROP REMOVE_MEMBER TRANSFER JOIN
grep -q "^GET status 0 leader $leader1: v$" "$dir/out.txt" || {
	echo "FAIL: the data client's GET did not read its PUT"
	exit 1
}
[ "$(grep -c '^GET status 0' "$dir/out.txt")" -eq 2 ] || {
	echo "FAIL: the connection did not stay open after the refusals"
	exit 1
}
expect 1 "forbidden: PEERS needs the admin role" \
	"${as_data[@]}" "$admin" transfer --nodes "$(addr 1)" --group 1 --to "$other1" --timeout-s 5

step "admin role: TRANSFER, REMOVE_MEMBER, DROP and JOIN are done"
# Each membership op may be answered RETRY (6) while a change is pending.
admin_op() { # NODE OP...
	local node=$1
	shift
	for _ in $(seq 20); do
		"${as_admin[@]}" "$roles" "$(addr "$node")" "$@" >"$dir/out.txt"
		! grep -q " status 0 " "$dir/out.txt" || {
			cat "$dir/out.txt"
			return 0
		}
		sleep 0.5
	done
	cat "$dir/out.txt"
	echo "FAIL: node $node did not do $*"
	exit 1
}
admin_op "$leader1" "TRANSFER:1:$other1"
admin_op "$leader2" "REMOVE_MEMBER:2:$other2"
admin_op "$other2" DROP:2
admin_op 1 JOIN:7
expect 0 "groups: 2, with a leader" "${as_admin[@]}" "$admin" status --nodes "$(addr 1)" \
	--groups 2 --timeout-s 10

# refused WHAT WANT_CLIENT WANT_LOG COMMAND...: COMMAND's connection must
# fail with WANT_CLIENT on its output and node 1 log WANT_LOG (one line a
# second per kind: wait that long first).
refused() {
	local what=$1 want_client=$2 want_log=$3 before
	shift 3
	sleep 1.1
	before=$(grep -c "refused by TLS" "$(log 1)" || true)
	step "refused: $what"
	expect 1 "$want_client" "$@" "$(addr 1)" LEADER:1
	for _ in $(seq 20); do
		[ "$(grep -c "refused by TLS" "$(log 1)" || true)" -gt "$before" ] && break
		sleep 0.1
	done
	if ! grep "refused by TLS" "$(log 1)" | tail -n +$((before + 1)) | grep -qF -- "$want_log"; then
		echo "FAIL: node 1 logged no line with \"$want_log\""
		grep "refused by TLS" "$(log 1)" || true
		exit 1
	fi
	echo "ok: $(grep -F -- "$want_log" "$(log 1)" | tail -n 1)"
}
refused "no client certificate" "certificate required \\(the node requires a client certificate" \
	"peer did not return a certificate" env FLOTILLA_TLS_CA="$certs/ca.pem" "$roles"
refused "a certificate of another CA" "alert unknown ca" \
	"certificate verify failed: unable to get local issuer certificate" \
	env FLOTILLA_TLS_CA="$certs/ca.pem" FLOTILLA_TLS_CERT="$dir/other/rogue.pem" \
	FLOTILLA_TLS_KEY="$dir/other/rogue.key" "$roles"
refused "an expired certificate" "TLS handshake with $(addr 1) failed" \
	"certificate verify failed: certificate has expired" env FLOTILLA_TLS_CA="$certs/ca.pem" \
	FLOTILLA_TLS_CERT="$certs/old.pem" FLOTILLA_TLS_KEY="$certs/old.key" "$roles"
refused "a node certificate as a client's" "TLS handshake with $(addr 1) failed" \
	"it is a node certificate (OU node)" env FLOTILLA_TLS_CA="$certs/ca.pem" \
	FLOTILLA_TLS_CERT="$certs/node-2.pem" FLOTILLA_TLS_KEY="$certs/node-2.key" "$roles"
refused "a client that does not trust the node's CA" \
	"certificate verify failed: self-signed certificate in certificate chain" \
	"the client ended the handshake" env FLOTILLA_TLS_CA="$dir/other/ca.pem" \
	FLOTILLA_TLS_CERT="$certs/admin.pem" FLOTILLA_TLS_KEY="$certs/admin.key" "$roles"
# A plaintext client connects (TCP), then gets one ERROR answer in plaintext.
sleep 1.1
step "refused: a plaintext client"
env -u FLOTILLA_TLS_CA -u FLOTILLA_TLS_CERT -u FLOTILLA_TLS_KEY "$roles" "$(addr 1)" LEADER:1 \
	>"$dir/out.txt" 2>&1 || true
cat "$dir/out.txt"
grep -q "^LEADER status 4 leader 0: this node requires TLS" "$dir/out.txt" || {
	echo "FAIL: the plaintext client got no \"this node requires TLS\" answer"
	exit 1
}
for _ in $(seq 20); do
	! grep -q "it spoke plaintext; this node requires TLS" "$(log 1)" || break
	sleep 0.1
done
grep -q "it spoke plaintext; this node requires TLS" "$(log 1)" || {
	echo "FAIL: node 1 did not log the plaintext client"
	exit 1
}

step "a handshake never begun: closed after --client-handshake-ms 1000"
exec 3<>"/dev/tcp/127.0.0.1/$((base + 1))"
for _ in $(seq 40); do
	! grep -q "(--client-handshake-ms 1000)" "$(log 1)" || break
	sleep 0.1
done
exec 3<&-
grep "(--client-handshake-ms 1000)" "$(log 1)" || {
	echo "FAIL: node 1 logged no handshake deadline"
	exit 1
}

step "counters"
maddr=$(cat "$dir/node-1.metrics")
body=$(timeout 10 bash -c 'exec 3<>"/dev/tcp/$1/$2" &&
	printf "GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n" "$1" >&3 && cat <&3' \
	scrape "${maddr%:*}" "${maddr##*:}")
for series in 'flotilla_client_tls_refused_total{node="1"}' \
	'flotilla_client_handshake_timeouts_total{node="1"}'; do
	value=$(printf '%s\n' "$body" | grep -F -- "$series " | awk '{ print $2 }' | tr -d '\r')
	if [ -z "$value" ] || [ "$value" -lt 1 ]; then
		echo "FAIL: $series is '${value}', want at least 1"
		exit 1
	fi
	echo "ok: $series $value"
done

step "flotilla-load with --tls-ca, --tls-cert, --tls-key (data role)"
expect 0 "ops/s" env -u FLOTILLA_TLS_CA "$load" --node "1=$(addr 1)" --node "2=$(addr 2)" \
	--node "3=$(addr 3)" --groups 1 --duration 1 --warmup 0 --concurrency 8 --threads 1 \
	--tls-ca "$certs/ca.pem" --tls-cert "$certs/data.pem" --tls-key "$certs/data.key"

# fingerprint: the SHA-256 of the certificate node 1 serves now.
fingerprint() {
	openssl s_client -connect "$(addr 1)" -CAfile "$certs/ca.pem" -cert "$certs/admin.pem" \
		-key "$certs/admin.key" </dev/null 2>/dev/null |
		openssl x509 -noout -fingerprint -sha256
}
file_fingerprint() { openssl x509 -in "$1" -noout -fingerprint -sha256; }

step "SIGHUP: new certificate files from the same CA"
old=$(fingerprint)
[ "$old" = "$(file_fingerprint "$certs/node-1.pem")" ] || {
	echo "FAIL: node 1 does not serve node-1.pem ($old)"
	exit 1
}
"$tls_certs" node "$certs" 1 >/dev/null
new=$(file_fingerprint "$certs/node-1.pem")
kill -HUP "$(cat "$dir/node-1.pid")"
for _ in $(seq 40); do
	! grep -q "client TLS reloaded" "$(log 1)" || break
	sleep 0.1
done
grep "client TLS reloaded" "$(log 1)" || {
	echo "FAIL: node 1 logged no reload"
	exit 1
}
[ "$(fingerprint)" = "$new" ] || {
	echo "FAIL: node 1 does not serve the new certificate after SIGHUP"
	exit 1
}
expect 0 "^GET status 0 leader [0-9]+: v$" "${as_data[@]}" "$roles" "$(addr 1)" GET:1
echo "ok: new connections get the new certificate"

step "SIGHUP: a broken key file fails the reload; the old certificates stay"
echo "not a key" >"$certs/node-1.key"
kill -HUP "$(cat "$dir/node-1.pid")"
for _ in $(seq 40); do
	! grep -q "client TLS reload failed" "$(log 1)" || break
	sleep 0.1
done
grep "client TLS reload failed" "$(log 1)" || {
	echo "FAIL: node 1 logged no failed reload"
	exit 1
}
[ "$(fingerprint)" = "$new" ] || {
	echo "FAIL: node 1 does not serve the certificate it had before the failed reload"
	exit 1
}
expect 0 "^GET status 0 leader [0-9]+: v$" "${as_data[@]}" "$roles" "$(addr 1)" GET:1
echo "ok: the old certificates stay"
failed=0
