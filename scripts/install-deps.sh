#!/usr/bin/env bash
# Installs the Debian packages that building, testing, the demo and the benchmarks need; with the
# argument `build`, only those that `make` (build/lexora, build/lexora-sim) needs.
# Idempotent and quiet when everything is already there (one dpkg-query call, no apt); run as root (or
# with sudo available).
set -euo pipefail

build_packages=(
  build-essential cmake pkg-config
  libuv1-dev libhttp-parser-dev libcurl4-openssl-dev libyaml-dev libcjson-dev
  libsqlite3-dev libhiredis-dev libssl-dev
  libpq-dev # the usage ledger in PostgreSQL
)
packages=(
  "${build_packages[@]}" clang libclang-rt-14-dev libcmocka-dev
  clang-format # CI checks that every C file is formatted as .clang-format says (make format-check)
  curl nginx wrk
  valgrind # bench part 7 counts instructions per request with callgrind
  redis-server # the Redis rate-limit store's tests and benchmark start their own on loopback
  systemd # systemd-analyze verify checks deploy/systemd's units; installs without starting anything
  prometheus # promtool checks /metrics; the metrics test starts its own server on loopback (none left running)
  sqlite3 # the usage-ledger tests read the ledger
  postgresql # the PostgreSQL ledger's tests and benchmark start their own server on loopback (initdb)
  openssl # the https:// backend test makes its CA and certificate (nginx terminates TLS in front of the sim)
  chromium # the dashboard test drives the page in a real browser (puppeteer-core, headless, loopback)
  fonts-ipafont-gothic # a Japanese font, so the dashboard's Japanese screenshots show their labels
)

if [ "${1:-}" = build ]; then
  packages=("${build_packages[@]}")
elif [ -n "${1:-}" ]; then
  echo "usage: $0 [build]" >&2
  exit 2
fi

installed=" $(dpkg-query -W -f='${Package}=${Status}\n' "${packages[@]}" 2>/dev/null |
  sed -n 's/=install ok installed$//p' | tr '\n' ' ' || true) "
missing=()
for p in "${packages[@]}"; do
  [[ "$installed" == *" $p "* ]] || missing+=("$p")
done
if [ "${1:-}" != build ]; then
  # Node.js may come from outside Debian (with its own npm); only install Debian's when absent.
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# No package may start its service here (prometheus would take :9090): unless the machine has its own
# policy-rc.d, one that denies every start stands for the time of this install.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod 755 "$policy"
  trap '$sudo rm -f "$policy"' EXIT
fi
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Only the binaries are wanted: keep Debian's prometheus service from starting at boot, or now.
if [[ " ${missing[*]} " == *" prometheus "* ]]; then
  $sudo deb-systemd-helper disable prometheus.service >/dev/null 2>&1 || true
  $sudo update-rc.d prometheus disable >/dev/null 2>&1 || true
  if [ -d /run/systemd/system ]; then $sudo systemctl stop prometheus >/dev/null 2>&1 || true; fi
fi
# Likewise redis-server: the tests and the benchmark start their own on a free loopback port.
if [[ " ${missing[*]} " == *" redis-server "* ]]; then
  $sudo deb-systemd-helper disable redis-server.service >/dev/null 2>&1 || true
  $sudo update-rc.d redis-server disable >/dev/null 2>&1 || true
  if [ -d /run/systemd/system ]; then $sudo systemctl stop redis-server >/dev/null 2>&1 || true; fi
fi
