"""`run_dashboard` with the broadcast handed to daphne's event loop: a prototype fix for the lead.

In the embedded default, the consume loop's thread calls `async_to_sync(group_send)`, which runs
the in-memory layer's `group_send` on a private event loop. The layer's asyncio queues belong to
daphne's loop; `put_nowait` from another thread wakes no one, so the row waits until daphne's loop
next wakes up for something else — its `application_checker` runs every second — hence ~0.5 s p50
(bench/live_latency.py --mode embedded). Submitting the coroutine to daphne's loop with
`asyncio.run_coroutine_threadsafe` wakes it at once.

    python -m bench.run_dashboard_fixed --no-demo --port 8000
"""

from __future__ import annotations

import asyncio
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "unified_msg_site.settings")
    import django

    django.setup()
    from channels.layers import get_channel_layer
    from daphne.server import twisted_loop  # the loop daphne's reactor runs on (installed on import)
    from django.conf import settings
    from django.core.management import call_command

    from demands import live

    def broadcast_on_server_loop(demands) -> None:
        if not demands:
            return
        newest = sorted(demands, key=lambda d: d.pk, reverse=True)[: settings.DEMANDS_LIVE_MAX_ROWS]
        rows = [live.row_payload(demand) for demand in newest]
        event = {"type": live.EVENT_DEMANDS_CREATED, "rows": rows}
        future = asyncio.run_coroutine_threadsafe(get_channel_layer().group_send(live.DEMANDS_GROUP, event), twisted_loop)
        future.result(timeout=5)

    live.broadcast_demands_created = broadcast_on_server_loop  # kafka.py calls it through the module
    call_command("run_dashboard", *sys.argv[1:])


if __name__ == "__main__":
    main()
