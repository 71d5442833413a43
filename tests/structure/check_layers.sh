#!/bin/sh
# The dependency rule, checked over the include graph of the tree:
#
#   base/                 includes nothing of the project outside base/
#   engine/   io/         include base/ and themselves, never each other
#   shard/                includes base/, engine/, io/, shard/ and flotilla.h
#   tools/  bench/        sit on top and may include anything below them
#   include/flotilla.h    includes nothing of the project
#
# Usage: check_layers.sh SOURCE_ROOT. Prints every forbidden include as
# file:line: text and exits 1 if there is one; exits 0 otherwise.
set -eu
root=${1:?usage: check_layers.sh SOURCE_ROOT}
cd "$root"

allowed() { # directory of the including file -> allowed directories of the included
	case "$1" in
	base) echo "base" ;;
	engine) echo "base engine" ;;
	io) echo "base io" ;;
	shard) echo "base engine io shard include" ;;
	include) echo "" ;;
	*) echo "*" ;;
	esac
}

report=$(
	for dir in base engine io shard include; do
		[ -d "$dir" ] || continue
		ok=$(allowed "$dir")
		for file in $(find "$dir" -name '*.[ch]' | sort); do
			# Project includes are the quoted ones: "dir/file.h", or "flotilla.h"
			# (the public header, found through include/).
			grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$file" | while IFS= read -r hit; do
				target=$(printf '%s\n' "$hit" | sed 's/^[^"]*"\([^"]*\)".*/\1/')
				case "$target" in
				*/*) target_dir=${target%%/*} ;;
				flotilla.h) target_dir=include ;;
				*) target_dir=$dir ;; # Same directory.
				esac
				case " $ok " in
				*" $target_dir "*) ;;
				*) echo "$file:${hit%%:*}: $dir/ may not include \"$target\" (allowed: ${ok:-nothing of the project})" ;;
				esac
			done
		done
	done
)
checked=$(find base engine io shard include -name '*.[ch]' 2>/dev/null | wc -l)
if [ -n "$report" ]; then
	printf '%s\n' "$report"
	echo "layers: forbidden includes found (rule: base <- engine, io <- shard <- tools, bench)"
	exit 1
fi
echo "layers: ok, $checked files of base/ engine/ io/ shard/ include/ follow base <- engine, io <- shard <- tools, bench"
