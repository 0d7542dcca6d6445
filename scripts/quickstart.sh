#!/usr/bin/env bash
# The quick-start pipeline behind `make run`: examples/hello becomes a git
# repository in a temporary directory and `kiln run` runs its workflow.
set -euo pipefail
build=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
kiln="$top/$build/bin/kiln"
[ -x "$kiln" ] || kiln="$build/bin/kiln"

dir=$(mktemp -d "${TMPDIR:-/tmp}/kiln-hello.XXXXXX")
trap 'rm -rf "$dir"' EXIT
cp -R "$top/examples/hello/." "$dir/"
git -C "$dir" init -q -b main
git -C "$dir" add -A
git -C "$dir" -c user.name=kiln -c user.email=kiln@localhost commit -q -m "hello"

# the jobs should see a clean environment, not the make that started us
unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES MAKE_TERMOUT MAKE_TERMERR

echo "kiln run $dir"
cd "$dir"
"$kiln" run
