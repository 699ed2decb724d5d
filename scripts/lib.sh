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
  # `mapper visualize --format png` draws labels with a system font (its test too).
  [ -d /usr/share/fonts/truetype/dejavu ] || need+=(fonts-dejavu-core)
  if [ ${#need[@]} -gt 0 ]; then
    step "installing ${need[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
}

# tracefs (tracepoint ids) and bpffs (pinning); the agent mounts them too, but
# doing it here makes a failure obvious early.
ensure_kernel_mounts() {
  if [ "$(id -u)" -eq 0 ]; then
    [ -d /sys/kernel/tracing/events ] || mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || true
    grep -q ' /sys/fs/bpf bpf ' /proc/mounts || mount -t bpf bpf /sys/fs/bpf 2>/dev/null || true
  fi
}
