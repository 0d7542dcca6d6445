#!/usr/bin/env bash
# tests/fuzz/run.sh BUILD_DIR [SECONDS] — runs every libFuzzer target built in
# BUILD_DIR/fuzz for SECONDS each (default 60), one after another, then merges
# the inputs that add coverage back into tests/fuzz/corpus/<target>/.
#
# Each target starts from its committed corpus and writes what it finds to a
# scratch directory; `-merge=1` then copies into the corpus only the inputs
# that add coverage. Past KILN_FUZZ_CAP files (default 500) the corpus is
# minimized again on edges alone, keeping the hand-written seeds (every file
# whose name is not a 40-hex SHA-1, as libFuzzer names its own).
#
# Crashes, leaks, timeouts and OOMs are left in BUILD_DIR/fuzz/artifacts/<target>/
# and make the script exit 1 (after the other targets have run).
#
# Environment: KILN_FUZZ_TARGETS="fuzz_yaml ..." to run only some targets;
# KILN_FUZZ_CAP; KILN_FUZZ_ARGS for extra libFuzzer flags (e.g. -jobs=2).
set -u -o pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
	echo "usage: $0 BUILD_DIR [SECONDS]" >&2
	exit 2
fi
build=$(cd "$1" && pwd) || exit 2
seconds=${2:-60}
here=$(cd "$(dirname "$0")" && pwd)
cap=${KILN_FUZZ_CAP:-500}

# UBSan reports are findings, not noise: stop at the first one.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}

max_len() {
	case $1 in
	fuzz_yaml) echo 65536 ;;
	fuzz_expr) echo 4096 ;;
	*) echo 16384 ;;
	esac
}

# Whether a corpus file is one libFuzzer wrote (named by its SHA-1) rather than a seed.
is_found() {
	[[ $(basename "$1") =~ ^[0-9a-f]{40}$ ]]
}

targets=${KILN_FUZZ_TARGETS:-}
if [ -z "$targets" ]; then
	for src in "$here"/fuzz_*.c; do
		targets="$targets $(basename "$src" .c)"
	done
fi

status=0
for t in $targets; do
	bin=$build/fuzz/$t
	if [ ! -x "$bin" ]; then
		echo "run.sh: $bin is not built (cmake --build $1 --target fuzz_targets)" >&2
		status=1
		continue
	fi
	corpus=$here/corpus/$t
	mkdir -p "$corpus"
	art=$build/fuzz/artifacts/$t
	mkdir -p "$art"
	work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-$t.XXXXXX")
	dict=()
	[ -f "$here/$t.dict" ] && dict=(-dict="$here/$t.dict")
	ml=$(max_len "$t")
	flags=(-max_len="$ml" -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$art/")

	echo "== $t: ${seconds}s from $(find "$corpus" -type f | wc -l) corpus files"
	# shellcheck disable=SC2086 # KILN_FUZZ_ARGS is split on purpose
	"$bin" "${flags[@]}" "${dict[@]}" -max_total_time="$seconds" -print_final_stats=1 \
		${KILN_FUZZ_ARGS:-} "$work" "$corpus" 2>&1 | tee "$build/fuzz/$t.log" |
		grep -E '^(#[0-9]+[[:space:]]+(INITED|DONE)|stat::|==[0-9]+==|SUMMARY|.*(ERROR|WARNING|broken contract|Test unit written|runtime error))'
	rc=${PIPESTATUS[0]}
	if [ "$rc" -ne 0 ]; then
		echo "run.sh: $t failed (exit $rc); see $build/fuzz/$t.log and $art/" >&2
		status=1
	fi

	# Keep what adds coverage, even after a crash (the crash input itself is in $art).
	"$bin" -merge=1 "${flags[@]}" "$corpus" "$work" >"$build/fuzz/$t.merge.log" 2>&1 ||
		{ echo "run.sh: $t: merge failed; see $build/fuzz/$t.merge.log" >&2; status=1; }
	n=$(find "$corpus" -type f | wc -l)
	if [ "$n" -gt "$cap" ]; then
		min=$(mktemp -d "${TMPDIR:-/tmp}/kiln-$t-min.XXXXXX")
		for f in "$corpus"/*; do
			is_found "$f" || cp "$f" "$min/"
		done
		if "$bin" -merge=1 -use_counters=0 "${flags[@]}" "$min" "$corpus" \
			>"$build/fuzz/$t.min.log" 2>&1; then
			for f in "$corpus"/*; do
				! is_found "$f" || rm -f "$f"
			done
			for f in "$min"/*; do
				! is_found "$f" || cp "$f" "$corpus/"
			done
		else
			echo "run.sh: $t: minimizing failed; see $build/fuzz/$t.min.log" >&2
			status=1
		fi
		rm -rf "$min"
	fi
	echo "== $t: corpus now $(find "$corpus" -type f | wc -l) files"
	rm -rf "$work"
done
exit $status
