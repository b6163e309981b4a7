#!/usr/bin/env bash
# Builds Lexora (Release, with CMake) and installs it under a prefix, /opt/spirrow/lexora by default:
#
#   PREFIX/bin/lexora, PREFIX/bin/lexora-sim   the gateway, and the vLLM simulator (for a smoke test)
#   PREFIX/config.yaml                         the config (LEXORA_CONFIG); never overwritten once there
#   PREFIX/config.example.yaml                 every key explained; refreshed on every install
#   PREFIX/share/systemd/*.service             the units (vllm@.service: one per GPU set), with PREFIX written in
#
# The default prefix needs root; it also creates the service user (spirrow) when missing and gives it
# PREFIX (where the usage ledger is written) and config.yaml. `--prefix DIR` installs anywhere, as any
# user, with no user creation and no chown (add --create-user to have them as root). Running it again
# is harmless: binaries and units are replaced, an existing config.yaml is kept.
set -euo pipefail

DEFAULT_PREFIX=/opt/spirrow/lexora
DEFAULT_VLLM_PYTHON=/opt/spirrow/vllm/bin/python3
repo=$(cd "$(dirname "$0")/.." && pwd)

usage() {
    cat <<EOF
Usage: scripts/install.sh [options]
  --prefix DIR         install into DIR (default $DEFAULT_PREFIX, which needs root)
  --build-dir DIR      CMake build folder (default build/); an existing one is reused
  --no-build           do not build: install the binaries already in the build folder
  --user NAME          the service user written in the units (default spirrow)
  --create-user        with --prefix, as root: create the user and chown as the default install does
  --vllm-python PATH   the Python that runs vLLM in vllm.service (default $DEFAULT_VLLM_PYTHON)
  -h, --help           this text
EOF
}

die() {
    echo "install.sh: $*" >&2
    exit 1
}

prefix="" build_dir="$repo/build" no_build=0 user=spirrow create_user=0 vllm_python=$DEFAULT_VLLM_PYTHON
while [ $# -gt 0 ]; do
    case "$1" in
    --prefix) [ $# -ge 2 ] || die "--prefix needs a folder"; prefix=$2; shift ;;
    --prefix=*) prefix=${1#*=} ;;
    --build-dir) [ $# -ge 2 ] || die "--build-dir needs a folder"; build_dir=$2; shift ;;
    --build-dir=*) build_dir=${1#*=} ;;
    --no-build) no_build=1 ;;
    --user) [ $# -ge 2 ] || die "--user needs a name"; user=$2; shift ;;
    --user=*) user=${1#*=} ;;
    --create-user) create_user=1 ;;
    --vllm-python) [ $# -ge 2 ] || die "--vllm-python needs a path"; vllm_python=$2; shift ;;
    --vllm-python=*) vllm_python=${1#*=} ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
    esac
    shift
done

is_root=0
[ "$(id -u)" -eq 0 ] && is_root=1
if [ -z "$prefix" ]; then
    prefix=$DEFAULT_PREFIX
    [ $is_root -eq 1 ] || die "installing into $prefix needs root (sudo scripts/install.sh), or choose --prefix DIR"
    create_user=1
fi
[ $create_user -eq 0 ] || [ $is_root -eq 1 ] || die "--create-user needs root"
[[ "$user" =~ ^[a-z_][a-z0-9_-]*$ ]] || die "--user: '$user' is not a valid user name"

# 1. the binaries
if [ $no_build -eq 0 ]; then
    command -v cmake >/dev/null || die "cmake is missing (scripts/install-deps.sh installs what the build needs)"
    echo "install.sh: building in $build_dir (Release)"
    cmake -S "$repo" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DLEXORA_TESTS=OFF >/dev/null
    cmake --build "$build_dir" -j"${JOBS:-2}" --target lexora lexora-sim >/dev/null
fi
[ -x "$build_dir/lexora" ] || die "$build_dir/lexora is missing: build it, or drop --no-build"

# 2. the service user
if [ $create_user -eq 1 ] && ! id -u "$user" >/dev/null 2>&1; then
    echo "install.sh: creating system user $user"
    useradd --system --user-group --home-dir "$prefix" --no-create-home --shell /usr/sbin/nologin "$user"
fi

# 3. the files. A binary is copied beside its target and renamed over it, so a running service is untouched.
mkdir -p "$prefix/bin" "$prefix/share/systemd"
prefix=$(cd "$prefix" && pwd)

put() { # put MODE SRC DEST
    install -m "$1" "$2" "$3.new.$$"
    mv -f "$3.new.$$" "$3"
}

put 0755 "$build_dir/lexora" "$prefix/bin/lexora"
[ -x "$build_dir/lexora-sim" ] && put 0755 "$build_dir/lexora-sim" "$prefix/bin/lexora-sim"
put 0644 "$repo/config/lexora_config.example.yaml" "$prefix/config.example.yaml"
if [ -e "$prefix/config.yaml" ]; then
    echo "install.sh: kept the existing $prefix/config.yaml"
else
    put 0640 "$repo/config/lexora_config.yaml" "$prefix/config.yaml"
fi

sed_escape() { printf '%s' "$1" | sed -e 's/[|&\\]/\\&/g'; }
for unit in spirrow-lexora.service vllm.service vllm@.service; do
    sed -e "s|/opt/spirrow/lexora|$(sed_escape "$prefix")|g" \
        -e "s|$DEFAULT_VLLM_PYTHON|$(sed_escape "$vllm_python")|g" \
        -e "s|^User=spirrow\$|User=$user|" -e "s|^Group=spirrow\$|Group=$user|" \
        "$repo/deploy/systemd/$unit" >"$prefix/share/systemd/$unit.new.$$"
    chmod 0644 "$prefix/share/systemd/$unit.new.$$"
    mv -f "$prefix/share/systemd/$unit.new.$$" "$prefix/share/systemd/$unit"
done

if [ $create_user -eq 1 ]; then
    chown "$user:$user" "$prefix" "$prefix/config.yaml"
fi

# 4. the config must load with the binary just installed
if ! "$prefix/bin/lexora" --check-config --config "$prefix/config.yaml" >/dev/null; then
    die "$prefix/config.yaml has problems (above); fix them before starting the service"
fi

echo "install.sh: installed lexora $("$prefix/bin/lexora" --version | cut -d' ' -f2) into $prefix"
echo "  config:  $prefix/config.yaml"
echo "  units:   $prefix/share/systemd/ (install and enable them with: sudo scripts/setup_systemd.sh$([ "$prefix" = "$DEFAULT_PREFIX" ] || echo " --prefix $prefix"))"
echo "  by hand: LEXORA_CONFIG=$prefix/config.yaml $prefix/bin/lexora"
