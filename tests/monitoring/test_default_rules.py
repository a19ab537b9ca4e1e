"""Alert rules ship by default (migration 0019) and are ordinary, editable rules."""

import importlib

import pytest
from django.apps import apps as global_apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from demands.monitoring.models import AlertRule

pytestmark = pytest.mark.django_db(transaction=True)
migration = importlib.import_module("demands.migrations.0019_default_alert_rules")
KINDS = {"heartbeat_missing", "time_to_drain", "rejection_ratio", "cluster_degraded"}


def test_migrating_creates_the_default_rules_and_unmigrating_removes_them():
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate([("demands", "0018_group_triage")])  # the migration before the defaults
    try:
        assert not AlertRule.objects.filter(kind__in=KINDS).exists()
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate([("demands", "0019_default_alert_rules")])
        rules = {rule.kind: rule for rule in AlertRule.objects.all()}
        assert set(rules) == KINDS and all(rule.enabled for rule in rules.values())
        assert rules["heartbeat_missing"].severity == "critical" and rules["rejection_ratio"].threshold == 0.2
        for rule in rules.values():
            rule.full_clean()  # valid as shipped: the rules page can save them unchanged
    finally:  # later tests need every migration, including those after 0019
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(latest)


def test_the_defaults_are_editable_and_a_rerun_never_duplicates_or_overrides_them():
    AlertRule.objects.all().delete()
    migration.create_default_rules(global_apps, None)
    rule = AlertRule.objects.get(kind="rejection_ratio")
    rule.threshold, rule.enabled = 0.5, False
    rule.save()
    migration.create_default_rules(global_apps, None)
    assert AlertRule.objects.count() == 4
    rule.refresh_from_db()
    assert (rule.threshold, rule.enabled) == (0.5, False)
