#!/usr/bin/env bash
# Stop the private service instances started by services/up.sh (never the machine's own).
#
#   services/down.sh [kafka] [postgres] [redis]   (no argument = all three)
#
# Stopping something that is not running is fine ("redis: not running").
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
services=("$@")
# Kafka first: its clients (the app) may still be talking to the databases.
[ ${#services[@]} -gt 0 ] || services=(kafka redis postgres)

failed=()
for svc in "${services[@]}"; do
    case $svc in
    kafka | postgres | redis) ;;
    *) echo "usage: $0 [kafka] [postgres] [redis]" >&2; exit 2 ;;
    esac
done
for svc in "${services[@]}"; do
    "$here/$svc.sh" stop || failed+=("$svc")
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "down: failed to stop: ${failed[*]}" >&2
    exit 1
fi
