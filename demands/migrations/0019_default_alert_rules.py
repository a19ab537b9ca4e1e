"""Alert rules that ship by default (no heartbeat, lag stalled, rejection ratio, cluster degraded),
so a fresh install is watched before anyone opens the alert-rules page; all of them are ordinary
rules, editable and disableable there. Also the FlowTotal table behind /metrics' counters."""

from django.db import migrations, models

DEFAULT_RULES = [
    {
        "name": "No consumer heartbeat", "kind": "heartbeat_missing", "severity": "critical", "threshold": 60,
        "renotify_minutes": 60,
    },
    {
        "name": "Consumer lag stalled or growing", "kind": "time_to_drain", "severity": "warning", "threshold": 1800,
        "renotify_minutes": 60,
    },
    {
        "name": "High rejection ratio", "kind": "rejection_ratio", "severity": "warning", "threshold": 0.2,
        "window_minutes": 5, "min_messages": 20, "group_by": "all", "renotify_minutes": 60,
    },
    {
        "name": "Kafka cluster degraded", "kind": "cluster_degraded", "severity": "critical", "threshold": 0,
        "renotify_minutes": 60,
    },
]


def create_default_rules(apps, schema_editor):
    AlertRule = apps.get_model("demands", "AlertRule")
    for fields in DEFAULT_RULES:
        if not AlertRule.objects.filter(kind=fields["kind"]).exists():  # someone's own rule of that kind wins
            AlertRule.objects.create(**fields)


def remove_default_rules(apps, schema_editor):
    AlertRule = apps.get_model("demands", "AlertRule")
    for fields in DEFAULT_RULES:
        AlertRule.objects.filter(name=fields["name"], kind=fields["kind"]).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("demands", "0018_group_triage"),
    ]

    operations = [
        migrations.CreateModel(
            name="FlowTotal",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("kind", models.CharField(max_length=16, verbose_name="kind")),
                ("type", models.CharField(blank=True, max_length=64, verbose_name="type")),
                ("source", models.CharField(blank=True, max_length=64, verbose_name="source")),
                ("count", models.BigIntegerField(default=0, verbose_name="count")),
            ],
            options={
                "verbose_name": "pruned flow total",
                "verbose_name_plural": "pruned flow totals",
                "ordering": ["kind", "type", "source"],
                "constraints": [models.UniqueConstraint(fields=("kind", "type", "source"), name="flowtotal_unique_key")],
            },
        ),
        migrations.RunPython(create_default_rules, remove_default_rules),
    ]
