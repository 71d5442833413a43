#!/bin/sh
# Builds the installed static library from the internal one: every object
# linked into one relocatable object in which only the public API (fl_*)
# stays global, so that Flotilla's internal names (raft_*, wal_*, shard_*,
# ...) cannot collide with an embedder's or another library's.
#
# Usage: flotilla-static.sh INTERNAL.a OUTPUT.a
set -eu
in=$1 out=$2
obj="$out.o"
rm -f "$out" "$obj"
ld -r --whole-archive "$in" -o "$obj"
objcopy --wildcard --keep-global-symbol='fl_*' "$obj"
ar rcs "$out" "$obj"
rm -f "$obj"
