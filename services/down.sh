#!/usr/bin/env bash
# Stop the private service instances started by services/up.sh (never the machine's own).
#
#   services/down.sh [kafka] [postgres] [redis] [rabbitmq]   (no argument = all four)
#
# Stopping something that is not running is fine ("redis: not running").
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
services=("$@")
# RabbitMQ and Kafka first: their clients (the bridge, the app) may still be talking to the databases.
[ ${#services[@]} -gt 0 ] || services=(rabbitmq kafka redis postgres)

failed=()
for svc in "${services[@]}"; do
    case $svc in
    kafka | postgres | redis | rabbitmq) ;;
    *) echo "usage: $0 [kafka] [postgres] [redis] [rabbitmq]" >&2; exit 2 ;;
    esac
done
for svc in "${services[@]}"; do
    "$here/$svc.sh" stop || failed+=("$svc")
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "down: failed to stop: ${failed[*]}" >&2
    exit 1
fi
