"""Monitoring and alerting: per-minute flow buckets, consumer lag and liveness, alert rules.

Writes happen in three places: `flow.record_batch_flow` inside the ingest transaction (arrivals,
rejections, ingest latency), the consume loop's heartbeat, and the monitor tick (`monitor.Monitor`:
roll-ups of triage history, backlog snapshots, lag samples, rule evaluation, notifications).
Everything else here reads.
"""
