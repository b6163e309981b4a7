#!/usr/bin/env bash
# Installs the systemd units that scripts/install.sh wrote into PREFIX/share/systemd
# (spirrow-lexora.service and vllm.service) into /etc/systemd/system, reloads systemd and enables both,
# so they start at boot. Needs root and a running systemd. Running it again is harmless.
#
# With --root DIR it works offline instead, on a system image or a chroot at DIR: the units go to
# DIR/etc/systemd/system and are enabled there (systemctl --root), and no running systemd is needed.
set -euo pipefail

DEFAULT_PREFIX=/opt/spirrow/lexora

usage() {
    cat <<EOF
Usage: scripts/setup_systemd.sh [options]
  --prefix DIR   where scripts/install.sh installed Lexora (default $DEFAULT_PREFIX)
  --now          also (re)start both services now
  --root DIR     install and enable into the system image at DIR, offline
  --no-verify    skip systemd-analyze verify (e.g. vLLM is installed later)
  -h, --help     this text
EOF
}

die() {
    echo "setup_systemd.sh: $*" >&2
    exit 1
}

prefix=$DEFAULT_PREFIX now=0 root="" verify=1
while [ $# -gt 0 ]; do
    case "$1" in
    --prefix) [ $# -ge 2 ] || die "--prefix needs a folder"; prefix=$2; shift ;;
    --prefix=*) prefix=${1#*=} ;;
    --now) now=1 ;;
    --root) [ $# -ge 2 ] || die "--root needs a folder"; root=$2; shift ;;
    --root=*) root=${1#*=} ;;
    --no-verify) verify=0 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
    esac
    shift
done

units=(vllm.service spirrow-lexora.service)
src="$prefix/share/systemd"
for u in "${units[@]}"; do
    [ -f "$src/$u" ] || die "$src/$u is missing: run scripts/install.sh$([ "$prefix" = "$DEFAULT_PREFIX" ] || echo " --prefix $prefix") first"
done
command -v systemctl >/dev/null || die "systemctl is missing: this system does not use systemd; start $prefix/bin/lexora another way"

if [ -z "$root" ]; then
    [ "$(id -u)" -eq 0 ] || die "needs root to write /etc/systemd/system: sudo scripts/setup_systemd.sh"
    [ -d /run/systemd/system ] || die "systemd is not running here (PID 1 is $(ps -o comm= -p 1 2>/dev/null || echo unknown)): \
copy $src/*.service into a systemd host's /etc/systemd/system, use --root DIR for an image, \
or run LEXORA_CONFIG=$prefix/config.yaml $prefix/bin/lexora directly"
    [ $now -eq 0 ] || [ -x "${prefix}/bin/lexora" ] || die "$prefix/bin/lexora is missing"
else
    [ $now -eq 0 ] || die "--now cannot start services inside --root $root"
    mkdir -p "$root/etc/systemd/system"
fi
dest="$root/etc/systemd/system"

if [ $verify -eq 1 ] && command -v systemd-analyze >/dev/null; then
    systemd-analyze verify "${units[@]/#/$src/}" ||
        die "systemd-analyze verify found problems in $src (above). A missing vLLM: install it, or give its \
Python to scripts/install.sh --vllm-python PATH; or skip this check with --no-verify"
fi

for u in "${units[@]}"; do
    install -m 0644 "$src/$u" "$dest/$u.new.$$"
    mv -f "$dest/$u.new.$$" "$dest/$u"
done

if [ -n "$root" ]; then
    systemctl --root="$root" enable "${units[@]}" 2>&1 | grep -v 'non-existent unit' || true
    echo "setup_systemd.sh: installed and enabled ${units[*]} in $root"
    exit 0
fi

systemctl daemon-reload
systemctl enable "${units[@]}"
if [ $now -eq 1 ]; then
    systemctl restart vllm.service spirrow-lexora.service
fi
echo "setup_systemd.sh: installed and enabled ${units[*]}"
echo "  start:  systemctl start spirrow-lexora   (starts vllm.service first)"
echo "  reload: systemctl reload spirrow-lexora  (after editing $prefix/config.yaml)"
echo "  log:    journalctl -u spirrow-lexora -f"
