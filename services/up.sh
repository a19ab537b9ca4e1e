#!/usr/bin/env bash
# Start the local services the project needs, each a private instance (see the scripts).
#
#   services/up.sh [kafka] [postgres] [redis] [rabbitmq]   (no argument = all four)
#
# Each service prints one line ("kafka: ready on 127.0.0.1:9092 (started in 4s)" or
# "kafka: already running ..."). Every requested service is attempted even if an earlier
# one fails; the exit status is non-zero if any failed. Services start one after the other
# because their first start may need apt-get, which allows one install at a time.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
services=("$@")
[ ${#services[@]} -gt 0 ] || services=(postgres redis kafka rabbitmq)

failed=()
for svc in "${services[@]}"; do
    case $svc in
    kafka | postgres | redis | rabbitmq) ;;
    *) echo "usage: $0 [kafka] [postgres] [redis] [rabbitmq]" >&2; exit 2 ;;
    esac
done
for svc in "${services[@]}"; do
    "$here/$svc.sh" start || failed+=("$svc")
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "up: failed to start: ${failed[*]}" >&2
    exit 1
fi
