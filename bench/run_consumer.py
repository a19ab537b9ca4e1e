"""`consume_demands` with the prototype persist path swapped in (bench/prototype_persist.py).

The same ConsumeLoop, settings, batching, commits and signal handling as the command; only
`demands.pipeline.loop.persist_batch` is replaced (`--persist ours` keeps it, to measure other
variants alone). With broadcast on, the newest created rows are read back (one query) because
`live.broadcast_demands_created` renders Demand instances. `--async-commit` commits offsets
without waiting for the broker's answer (the loop's own asynchronous mode, `async_commit=True`,
whatever CONSUMER_ASYNC_COMMIT says; unconfirmed offsets are committed synchronously at close).

    DATABASE_URL=… python -m bench.run_consumer --topics T --group G [--no-broadcast] [--persist ours|fast]
"""

from __future__ import annotations

import argparse
import os
import signal


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topics", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--batch-time", type=float, default=None)
    parser.add_argument("--no-broadcast", action="store_true")
    parser.add_argument("--persist", choices=["fast", "ours"], default="fast")
    parser.add_argument("--async-commit", action="store_true")
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "unified_msg_site.settings")
    import django

    django.setup()
    from django.conf import settings

    from bench.prototype_persist import persist_batch_fast
    from demands.management.commands.consume_demands import tune_switch_interval
    from demands.pipeline import loop as loop_module
    from demands.pipeline.persist import BatchResult
    from demands.models import Demand

    broadcast = not args.no_broadcast

    def persist(records):
        fast = persist_batch_fast(records)
        created = fast.created_ids
        if broadcast and created:
            created = list(Demand.objects.filter(pk__in=created[-settings.DEMANDS_LIVE_MAX_ROWS:]))
        return BatchResult(created=created, rejected=fast.rejected, duplicates=fast.duplicates)

    if args.persist == "fast":
        loop_module.persist_batch = persist
    loop = loop_module.ConsumeLoop(
        topics=[t for t in args.topics.split(",") if t], group=args.group,
        batch_size=args.batch_size, batch_timeout=args.batch_time, broadcast=broadcast,
        async_commit=True if args.async_commit else None,
    )
    tune_switch_interval()  # what consume_demands does for its process (the loop itself does not)
    signal.signal(signal.SIGTERM, lambda *_: loop.stop())
    signal.signal(signal.SIGINT, lambda *_: loop.stop())
    loop.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
