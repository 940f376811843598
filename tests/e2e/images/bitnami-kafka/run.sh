#!/bin/bash
# The node tests' docker.io/bitnami/kafka:4.0.0-debian-12-r10 run.sh. The real one ends in
# `kafka-server-start.sh $KAFKA_CONF_FILE`: the Bitnami chart mounts the server.properties its
# init script rendered at that path, and the JVM reads it as it is. Here the project's test broker
# (kx-test-broker) reads the same file instead. Not reproduced: the storage format and its SCRAM
# users (the test broker keeps no log and speaks SASL PLAIN only).
set -o errexit -o nounset -o pipefail
export KAFKA_CONF_FILE="${KAFKA_CONF_FILE:-/opt/bitnami/kafka/config/server.properties}"
export CLUSTER_ID="${KAFKA_KRAFT_CLUSTER_ID:-kx-test-cluster}"
echo "bitnami/kafka stand-in: $KAFKA_CONF_FILE" >&2
exec /opt/bitnami/kafka/bin/kx-test-broker "$KAFKA_CONF_FILE"
