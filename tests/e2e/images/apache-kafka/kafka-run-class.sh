#!/bin/sh
# The test images' stand-in for bin/kafka-run-class.sh: for kafka.Kafka, the project's test broker
# (kx-test-broker, beside it) on the properties file that follows the class, with any
# `--override k=v` appended to a copy, as Kafka applies them over the file.
set -eu
while [ $# -gt 0 ] && [ "$1" != kafka.Kafka ]; do shift; done
[ $# -ge 2 ] || { echo "kafka-run-class.sh stand-in: no kafka.Kafka <file>" >&2; exit 1; }
file="$2"
shift 2
if [ $# -gt 0 ]; then
  copy="$(mktemp)"
  cp "$file" "$copy"
  while [ $# -gt 0 ]; do
    case "$1" in
      --override) shift; [ $# -gt 0 ] && echo "$1" >>"$copy" ;;
      --override=*) echo "${1#--override=}" >>"$copy" ;;
    esac
    [ $# -gt 0 ] && shift
  done
  file="$copy"
fi
echo "kafka-run-class.sh stand-in: kafka.Kafka on $file" >&2
exec "$(dirname "$0")/kx-test-broker" "$file"
