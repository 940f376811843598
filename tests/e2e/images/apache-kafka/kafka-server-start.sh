#!/bin/bash
# The test images' stand-in for the distribution's bin/kafka-server-start.sh, which it behaves
# like: `[-daemon] server.properties [--override property=value]*`, usage and exit 1 without
# arguments, and everything else found from its own directory, `$(dirname $0)`, ending in
# kafka-run-class.sh with the main class and the arguments as given.
if [ $# -lt 1 ]; then
  echo "USAGE: $0 [-daemon] server.properties [--override property=value]*"
  exit 1
fi
base_dir=$(dirname "$0")
EXTRA_ARGS=${EXTRA_ARGS-'-name kafkaServer'}
if [ "$1" = -daemon ]; then
  EXTRA_ARGS="-daemon $EXTRA_ARGS"
  shift
fi
# shellcheck disable=SC2086 # EXTRA_ARGS is words, as the distribution's script passes them
exec "$base_dir/kafka-run-class.sh" $EXTRA_ARGS kafka.Kafka "$@"
