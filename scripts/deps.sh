#!/usr/bin/env bash
# Installs the Debian packages that kiln's build and tests need, and only
# those that are missing; with everything present it does nothing.
set -euo pipefail

pkgs=(
	build-essential cmake pkg-config git bash
	libnng-dev protobuf-c-compiler libprotobuf-c-dev
	libgit2-dev libyaml-dev libarchive-dev libzstd-dev
	libssl-dev libsqlite3-dev libjansson-dev libsystemd-dev
	clang libclang-rt-14-dev python3
	zstd
	systemd dpkg-dev # systemd-analyze verify of the units; dpkg-shlibdeps for make package
)

missing=()
for p in "${pkgs[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done

if ((${#missing[@]})); then
	echo "deps: installing ${missing[*]}" >&2
	SUDO=
	[ "$(id -u)" -eq 0 ] || SUDO=sudo
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The differential tests drive GitHub's own expression evaluator and workflow
# parser (tests/oracle): node from Debian when there is none, then the npm
# packages that tests/oracle/package-lock.json pins, again when the lock changes.
oracle=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/oracle
if [ ! -d "$oracle/node_modules/@actions/expressions" ] ||
	[ "$oracle/package-lock.json" -nt "$oracle/node_modules/.package-lock.json" ]; then
	node_missing=()
	command -v node >/dev/null 2>&1 || node_missing+=(nodejs)
	command -v npm >/dev/null 2>&1 || node_missing+=(npm)
	if ((${#node_missing[@]})); then
		echo "deps: installing ${node_missing[*]}" >&2
		SUDO=
		[ "$(id -u)" -eq 0 ] || SUDO=sudo
		export DEBIAN_FRONTEND=noninteractive
		$SUDO apt-get update -qq
		$SUDO apt-get install -y -qq --no-install-recommends "${node_missing[@]}" >/dev/null
	fi
	echo "deps: installing the npm packages of tests/oracle" >&2
	(cd "$oracle" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
