from django.contrib import admin

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
    list_display = ("id", "topic", "partition", "offset", "reason", "received_at")
    search_fields = ("reason",)
    readonly_fields = ("topic", "partition", "offset", "kafka_timestamp", "key", "payload_text", "reason", "received_at")
    exclude = ("payload",)
    show_full_result_count = False


from .monitoring import admin as _monitoring_admin  # noqa: E402,F401  (monitoring and alerting, issue 4)
