#!/usr/bin/env bash
# bench/run.sh BUILD_DIR — runs every benchmark in BUILD_DIR/bench with its defaults and
# prints its figures (one "name value" line each; lines starting with '#' are notes).
# Benchmarks: dispatch (~4 s), logs (~35 s: 500 MB through kiln), steps (~8 s).
# Exit status: 0 if every benchmark ran, 1 if one failed to run, 2 on a usage error.
# A missed goal is reported as FAIL in the figures, not in the exit status.
set -euo pipefail

if [[ $# -ne 1 || $1 == -h || $1 == --help ]]; then
	echo "usage: bench/run.sh BUILD_DIR" >&2
	exit 2
fi
dir=$1/bench
if [[ ! -d $dir ]]; then
	echo "bench/run.sh: no $dir (configure with -DKILN_BENCH=ON and build)" >&2
	exit 2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-run.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# bench_dispatch times a step's start from inside the step's process: the step's shell is a
# "stamp" program that reads CLOCK_MONOTONIC first thing in main(). By default that is
# bench_dispatch itself, whose start-up loads ~25 shared libraries (about 2 ms here) —
# the benchmark's own cost, not kiln's. This static one starts in a few hundred µs.
stamp=
cat >"$tmp/stamp.c" <<'C'
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* stamp --stamp FILE [SCRIPT]: appends CLOCK_MONOTONIC (ns) at the start of main() to FILE. */
int main(int argc, char **argv)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	if (argc < 3 || strcmp(argv[1], "--stamp") != 0)
		return 2;
	char b[32];
	int n = snprintf(b, sizeof b, "%lld\n", (long long)t.tv_sec * 1000000000LL + t.tv_nsec);
	int fd = open(argv[2], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	return fd < 0 || write(fd, b, (size_t)n) != n;
}
C
cc=${CC:-cc}
if "$cc" -O2 -static -o "$tmp/stamp" "$tmp/stamp.c" 2>/dev/null ||
	"$cc" -O2 -o "$tmp/stamp" "$tmp/stamp.c" 2>/dev/null; then
	stamp=$tmp/stamp
else
	echo "# bench/run.sh: cannot compile the stamp program with $cc; bench_dispatch uses itself"
fi

status=0
found=0
for b in "$dir"/bench_*; do
	[[ -f $b && -x $b ]] || continue
	found=1
	name=${b##*/bench_}
	args=()
	case $name in
	dispatch) [[ -n $stamp ]] && args=(--stamp-prog "$stamp") ;;
	# KILN_BENCH_RT=1: run bench_steps under SCHED_FIFO (needs CAP_SYS_NICE), so that other
	# load on the machine does not preempt its 1-ms steps; see bench/README.md
	steps) [[ ${KILN_BENCH_RT:-} == 1 ]] && args=(--rt) ;;
	# 500 MB is the default; a smaller --bytes is quicker (kiln stores ~25 MB/s here)
	logs) args=(--bytes 500M) ;;
	esac
	echo "== $name: $b ${args[*]}"
	echo "# loadavg $(cat /proc/loadavg 2>/dev/null)"
	start=$(date +%s.%N)
	if ! "$b" "${args[@]}"; then
		echo "bench/run.sh: $name failed" >&2
		status=1
	fi
	awk -v n="$name" -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "# %s took %.1f s\n", n, b - a }'
done
if [[ $found -eq 0 ]]; then
	echo "bench/run.sh: no benchmarks in $dir" >&2
	exit 2
fi
exit $status
