"""What SLA matching adds to ingest (issue 17): `timers.stamp` on one 500-demand batch, with three
policies around the clock and in office hours. Not a test: it prints figures. No database: the
policies are built in memory (the cache's form), as the consumer holds them between batches.

    .venv/bin/python -m bench.sla_stamp [--batch 500] [--repeat 50]
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import datetime, timezone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "unified_msg_site.settings")
    import django

    django.setup()
    from demands.pipeline.parse import NewDemand
    from demands.sla import timers
    from demands.sla.business_time import ALWAYS, BusinessCalendar
    from demands.sla.policies import Policy, Step, book

    office = BusinessCalendar.from_text(time_zone="Asia/Shanghai", weekly="mon-fri 09:00-18:00", holidays="2026-12-25")
    now = datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc)
    priorities = ["urgent", "high", "normal", "low"]
    for name, calendar in (("around the clock", ALWAYS), ("office hours", office)):
        policies = [
            Policy(id=i, name=str(i), priorities=frozenset(p), types=frozenset(), sources=frozenset(), team_id=None,
                   respond_seconds=1800, resolve_seconds=14400, at_risk_fraction=0.8, calendar=calendar,
                   steps=(Step(i, 15, "not_acknowledged", 1, None, "", None, None),))
            for i, p in enumerate(({"urgent"}, {"high"}, {"normal", "low"}), start=1)
        ]
        book.policies = lambda policies=policies: policies
        demands = [
            NewDemand(source="web_app", message_id=str(i), type="user_feedback", content="c", occurred_at=now,
                      priority=priorities[i % 4], tags=[], extra={}, kafka_topic="t", kafka_partition=0, kafka_offset=i,
                      kafka_timestamp=None, received_at=now)
            for i in range(args.batch)
        ]
        best = min(_timed(timers.stamp, demands, now) for _ in range(args.repeat))
        print(f"stamp, {args.batch} demands, 3 policies, {name}: {best * 1e3:.2f} ms a batch, "
              f"{best / args.batch * 1e6:.2f} µs a demand (best of {args.repeat})")


def _timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
