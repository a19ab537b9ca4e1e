"""The admin index lists what people configure or look up; the monitor's internal tables (flow
and latency buckets, backlog, lag and cluster samples, consumer heartbeats) are kept off it. They
stay registered, read-only, so their pages are still reachable by URL (linked from monitoring)."""

from django.contrib import admin

from ..monitoring.models import BacklogSample, ClusterSample, ConsumerHeartbeat, FlowBucket, LagSample, LatencyBucket

INTERNAL_MODELS = (FlowBucket, LatencyBucket, BacklogSample, LagSample, ClusterSample, ConsumerHeartbeat)


def _not_in_index(request) -> bool:
    return False


def hide_internal_tables(site: admin.AdminSite = admin.site) -> None:
    for model in INTERNAL_MODELS:
        model_admin = site._registry.get(model)
        if model_admin is not None:
            # has_module_permission only decides what the index and app pages list; the changelist
            # still checks view permission, so a direct link keeps working for those allowed.
            model_admin.has_module_permission = _not_in_index
