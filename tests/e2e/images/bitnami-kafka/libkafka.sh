#!/bin/bash
# The node tests' docker.io/bitnami/kafka:4.0.0-debian-12-r10: the functions of the image's
# /opt/bitnami/scripts/libkafka.sh (and the libfile.sh and liblog.sh it loads) that the Bitnami
# chart's init script calls, with the image's behaviour, written for these tests:
#   replace_in_file FILE MATCH SUBSTITUTE [POSIX=true]  sed over the whole file, written back
#                                       with `>` rather than in place (a ConfigMap's file cannot be
#                                       replaced), POSIX extended regexes unless POSIX=false
#   kafka_common_conf_set FILE KEY VALUE  replaces the line of KEY (commented out or not), or
#                                       appends `KEY=VALUE` on a new line
#   kafka_server_conf_set KEY VALUE     the same on $KAFKA_CONF_FILE
#   info, warn, error, debug            log lines on stderr

_kafka_log() {
    local level="$1"; shift
    printf 'kafka %s %s ==> %s\n' "$(date '+%H:%M:%S.%2N')" "$level" "$*" >&2
}
info() { _kafka_log "INFO " "$@"; }
warn() { _kafka_log "WARN " "$@"; }
error() { _kafka_log "ERROR" "$@"; }
debug() { [[ "${BITNAMI_DEBUG:-false}" = true ]] && _kafka_log "DEBUG" "$@"; true; }

replace_in_file() {
    local file="${1:?file}" match="${2:?match}" substitute="${3:?substitute}" posix="${4:-true}"
    local d=$'\001' result
    if [[ "$posix" = true ]]; then
        result="$(sed -E "s${d}${match}${d}${substitute}${d}g" "$file")"
    else
        result="$(sed "s${d}${match}${d}${substitute}${d}g" "$file")"
    fi
    echo "$result" >"$file"
}

kafka_common_conf_set() {
    local file="${1:?file}" key="${2:?key}"
    shift 2
    if [[ "$#" -ne 1 ]]; then
        error "kafka_common_conf_set $key: one value expected, got $#"
        return 1
    fi
    if grep -q "^[#\\s]*$key\s*=.*" "$file"; then
        replace_in_file "$file" "^[#\\s]*${key}\s*=.*" "${key}=${1}" false
    else
        printf '\n%s=%s' "$key" "$1" >>"$file"
    fi
}

kafka_server_conf_set() {
    kafka_common_conf_set "${KAFKA_CONF_FILE:?KAFKA_CONF_FILE is not set}" "$@"
}
