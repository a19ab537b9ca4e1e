from django.contrib import admin

from .ingest_admin import discard_selected, replay_selected  # also registers SourceApiKey
from .models import Demand, RejectedMessage


@admin.register(Demand)
class DemandAdmin(admin.ModelAdmin):
    list_display = ("id", "source", "message_id", "type", "priority", "status", "short_content", "occurred_at", "received_at")
    list_filter = ("status", "priority", "type", "source")
    search_fields = ("message_id", "content")
    readonly_fields = ("kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp", "received_at")
    show_full_result_count = False  # no COUNT(*) over millions of rows on every page
    list_per_page = 50

    @admin.display(description="content")
    def short_content(self, obj):
        return obj.content[:80]


@admin.register(RejectedMessage)
class RejectedMessageAdmin(admin.ModelAdmin):
    list_display = ("id", "topic", "partition", "offset", "reason", "received_at", "status", "handled_by")
    list_filter = ("status",)
    search_fields = ("reason",)
    readonly_fields = ("topic", "partition", "offset", "kafka_timestamp", "key", "payload_text", "reason", "received_at",
                       "status", "handled_by", "handled_at", "replay_payload", "replay_topic", "replay_partition", "replay_offset")
    exclude = ("payload",)
    actions = [replay_selected, discard_selected]
    show_full_result_count = False
