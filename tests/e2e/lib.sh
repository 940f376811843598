# shellcheck shell=bash
# Shared by control-plane.sh and node.sh (sourced; each sets LOG_NAME first).

log() { echo "$LOG_NAME: $*" >&2; }

# Installs the Debian packages among "$@" that are not installed yet.
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# Runs "$@" every half second, up to TRIES times, until it succeeds; says WHAT did not.
wait_for() {
  local what="$1" tries="$2" i; shift 2
  for ((i = 0; i < tries; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  log "$what did not come up"
  return 1
}
