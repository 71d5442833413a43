#!/bin/sh
# The library boundary: the installed shared and static libraries define no
# global symbol outside the public API (fl_*). Prints each stray symbol and
# exits 1 if there is one.
#
# Usage: check_symbols.sh LIBFLOTILLA.so LIBFLOTILLA.a
set -eu
shared=${1:?usage: check_symbols.sh LIBFLOTILLA.so LIBFLOTILLA.a}
static=${2:?usage: check_symbols.sh LIBFLOTILLA.so LIBFLOTILLA.a}

# Defined, global symbols (nm -g --defined-only): the third field is the name.
stray=$(
	{
		nm -D --defined-only "$shared" | awk -v lib="$(basename "$shared")" '{print lib ": " $NF}'
		nm -g --defined-only "$static" | awk -v lib="$(basename "$static")" 'NF >= 3 {print lib ": " $NF}'
	} | grep -v ': fl_' || true
)
count_shared=$(nm -D --defined-only "$shared" | grep -c ' fl_' || true)
count_static=$(nm -g --defined-only "$static" | grep -c ' fl_' || true)
if [ -n "$stray" ]; then
	printf '%s\n' "$stray"
	echo "symbols: $(printf '%s\n' "$stray" | wc -l) exported symbol(s) outside the public API (fl_*)"
	exit 1
fi
if [ "$count_shared" -eq 0 ] || [ "$count_static" -eq 0 ]; then
	echo "symbols: no fl_ symbol found ($count_shared in $shared, $count_static in $static)"
	exit 1
fi
echo "symbols: ok, only fl_* exported ($count_shared from the shared library, $count_static from the static one)"
