#!/bin/sh
# The test images' stand-in for bin/kafka-storage.sh: the test broker keeps no log, so `format`
# has nothing to do.
echo "kafka-storage.sh stand-in: $*" >&2
