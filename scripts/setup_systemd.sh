#!/usr/bin/env bash
# Installs the systemd units that scripts/install.sh wrote into PREFIX/share/systemd
# (spirrow-lexora.service and vllm.service) into /etc/systemd/system, reloads systemd and enables both,
# so they start at boot. Needs root and a running systemd. Running it again is harmless.
#
# With --root DIR it works offline instead, on a system image or a chroot at DIR: the units go to
# DIR/etc/systemd/system and are enabled there (systemctl --root), and no running systemd is needed.
#
# With --gpus SETS (a multi-GPU server) it installs vllm@.service instead of vllm.service: one instance
# per GPU set, each with its environment file PREFIX/vllm/SET.env (CUDA_VISIBLE_DEVICES, port,
# --tensor-parallel-size), spirrow-lexora.service ordered after all of them (and wanting them), and
# PREFIX/vllm/backends.yaml: the backends: entries of config.yaml matching the instances, with their gpus:.
set -euo pipefail

DEFAULT_PREFIX=/opt/spirrow/lexora
LEXORA_PORT=8001 # server.port of the shipped config: never given to an instance

usage() {
    cat <<EOF
Usage: scripts/setup_systemd.sh [options]
  --prefix DIR       where scripts/install.sh installed Lexora (default $DEFAULT_PREFIX)
  --now              also (re)start the services now
  --root DIR         install and enable into the system image at DIR, offline
  --no-verify        skip systemd-analyze verify (e.g. vLLM is installed later)
  --gpus SETS        one vLLM instance (vllm@.service) per comma-separated GPU set; a set is one GPU index,
                     or several joined by + for one tensor-parallel instance over them:
                     0,1 = two replicas, one per GPU; 0+1 = one model over two GPUs; 0+1,2+3 = two of those
  --port N           with --gpus: the first instance's port (default 8000); the next ones count up,
                     skipping $LEXORA_PORT (Lexora's)
  --model PATH       with --gpus: the model every instance serves (default /models/qwen3-32b)
  --model-name NAME  with --gpus: its name for clients (default qwen3-32b)
  -h, --help         this text
EOF
}

die() {
    echo "setup_systemd.sh: $*" >&2
    exit 1
}

prefix=$DEFAULT_PREFIX now=0 root="" verify=1 gpus="" port=8000 model=/models/qwen3-32b model_name=qwen3-32b
while [ $# -gt 0 ]; do
    case "$1" in
    --prefix) [ $# -ge 2 ] || die "--prefix needs a folder"; prefix=$2; shift ;;
    --prefix=*) prefix=${1#*=} ;;
    --now) now=1 ;;
    --root) [ $# -ge 2 ] || die "--root needs a folder"; root=$2; shift ;;
    --root=*) root=${1#*=} ;;
    --no-verify) verify=0 ;;
    --gpus) [ $# -ge 2 ] && [ -n "$2" ] || die "--gpus needs GPU sets, e.g. 0,1 or 0+1"; gpus=$2; shift ;;
    --gpus=?*) gpus=${1#*=} ;;
    --port) [ $# -ge 2 ] || die "--port needs a number"; port=$2; shift ;;
    --port=*) port=${1#*=} ;;
    --model) [ $# -ge 2 ] || die "--model needs a path"; model=$2; shift ;;
    --model=*) model=${1#*=} ;;
    --model-name) [ $# -ge 2 ] || die "--model-name needs a name"; model_name=$2; shift ;;
    --model-name=*) model_name=${1#*=} ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
    esac
    shift
done

# --gpus: the instances (vllm@SET.service, the set's + written as -), their GPU sets and their ports.
instances=() inst_sets=() inst_ports=()
plan_instances() {
    [[ $port =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] || die "--port must be a port number, got '$port'"
    [[ $model_name =~ ^[A-Za-z0-9._:/-]+$ ]] || die "--model-name must be letters, digits and ._:/- only, got '$model_name'"
    [[ $model =~ ^[^[:space:]\"]+$ ]] || die "--model must be a path without spaces or quotes, got '$model'"
    [[ $gpus =~ ^[0-9]+(\+[0-9]+)*(,[0-9]+(\+[0-9]+)*)*$ ]] ||
        die "--gpus: '$gpus' is not a list of GPU sets (indexes joined by +, sets by commas: 0,1 or 0+1)"
    local seen="," set g
    local -a sets
    IFS=, read -r -a sets <<<"$gpus"
    for set in "${sets[@]}"; do
        for g in ${set//+/ }; do
            [[ $seen != *",$((10#$g)),"* ]] || die "--gpus: GPU $g is in two sets"
            seen="$seen$((10#$g)),"
        done
        [ "$port" -ne $LEXORA_PORT ] || port=$((port + 1))
        [ "$port" -le 65535 ] || die "--gpus: no port left for GPU set $set after --port"
        instances+=("vllm@${set//+/-}.service") inst_sets+=("$set") inst_ports+=("$port")
        port=$((port + 1))
    done
}

if [ -n "$gpus" ]; then
    plan_instances
    units=(vllm@.service spirrow-lexora.service)
else
    units=(vllm.service spirrow-lexora.service)
fi
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

# The units as they are installed, staged first: with --gpus, Lexora's is ordered after the instances
# and wants them, instead of requiring vllm.service (one replica down must not stop the gateway).
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
for u in "${units[@]}"; do
    cp "$src/$u" "$stage/$u"
done
check=("${units[@]/#/$stage/}")
if [ ${#instances[@]} -gt 0 ]; then
    grep -qx 'After=network.target vllm.service' "$stage/spirrow-lexora.service" &&
        grep -qx 'Requires=vllm.service' "$stage/spirrow-lexora.service" ||
        die "$src/spirrow-lexora.service lacks 'After=network.target vllm.service' or 'Requires=vllm.service'"
    sed -i -e "s|^After=network.target vllm.service\$|After=network.target ${instances[*]}|" \
        -e "s|^Requires=vllm.service\$|Wants=${instances[*]}|" "$stage/spirrow-lexora.service"
    check=("$stage/spirrow-lexora.service" "${instances[@]/#/$stage/}") # verify loads each instance from the template
fi

if [ $verify -eq 1 ] && command -v systemd-analyze >/dev/null; then
    systemd-analyze verify "${check[@]}" ||
        die "systemd-analyze verify found problems in $src (above). A missing vLLM: install it, or give its \
Python to scripts/install.sh --vllm-python PATH; or skip this check with --no-verify"
fi

for u in "${units[@]}"; do
    install -m 0644 "$stage/$u" "$dest/$u.new.$$"
    mv -f "$dest/$u.new.$$" "$dest/$u"
done

# Writes file from standard input, atomically.
put() {
    cat >"$1.new.$$"
    chmod 0644 "$1.new.$$"
    mv -f "$1.new.$$" "$1"
}

# --gpus: each instance's environment file, and the backends: entries matching them.
write_instances() {
    local dir="$root$prefix/vllm" i set name yaml
    mkdir -p "$dir"
    yaml="# Written by scripts/setup_systemd.sh --gpus $gpus: one backend per vLLM instance (vllm@SET.service).
# Put these entries under backends: in $prefix/config.yaml, then: systemctl reload spirrow-lexora
backends:"
    for i in "${!instances[@]}"; do
        set=${inst_sets[$i]} name=${instances[$i]#vllm@}
        name=${name%.service}
        printf '%s\n' "# vllm@$name.service; written by scripts/setup_systemd.sh --gpus $gpus (run it again to change it)" \
            "CUDA_VISIBLE_DEVICES=${set//+/,}" \
            "SPIRROW_PORT=${inst_ports[$i]}" \
            "SPIRROW_TENSOR_PARALLEL_SIZE=$(($(tr -cd + <<<"$set" | wc -c) + 1))" \
            "SPIRROW_MODEL=$model" \
            "SPIRROW_MODEL_NAME=$model_name" | put "$dir/$name.env"
        yaml="$yaml
  vllm-$name:
    type: vllm
    url: \"http://127.0.0.1:${inst_ports[$i]}\"
    models: [\"$model_name\"]
    gpus: [${set//+/, }]"
    done
    printf '%s\n' "$yaml" | put "$dir/backends.yaml"
}

note_backends() {
    [ ${#instances[@]} -eq 0 ] ||
        echo "  config: the instances' backends: entries are in $prefix/vllm/backends.yaml; put them in $prefix/config.yaml"
}

if [ ${#instances[@]} -gt 0 ]; then
    write_instances
    units=("${instances[@]}" spirrow-lexora.service)
    if [ -f "$dest/vllm.service" ]; then # it would take GPU 0 and port 8000 again
        sc=(systemctl)
        [ -z "$root" ] || sc+=(--root="$root")
        "${sc[@]}" disable vllm.service >/dev/null 2>&1 || true
        echo "setup_systemd.sh: disabled vllm.service (the vllm@ instances replace it)"
    fi
fi

if [ -n "$root" ]; then
    systemctl --root="$root" enable "${units[@]}" 2>&1 | grep -v 'non-existent unit' || true
    echo "setup_systemd.sh: installed and enabled ${units[*]} in $root"
    note_backends
    exit 0
fi

systemctl daemon-reload
systemctl enable "${units[@]}"
if [ $now -eq 1 ]; then
    systemctl restart "${units[@]}"
fi
echo "setup_systemd.sh: installed and enabled ${units[*]}"
note_backends
echo "  start:  systemctl start spirrow-lexora   (starts the vLLM units first)"
echo "  reload: systemctl reload spirrow-lexora  (after editing $prefix/config.yaml)"
echo "  log:    journalctl -u spirrow-lexora -f"
