from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from demands.intake.keys import api_key_create


class Command(BaseCommand):
    help = (
        "Make an API key for POST /api/ingest/, bound to one source, and print it. The key is shown "
        "only now (the database keeps its hash); revoke it in the admin."
    )

    def add_arguments(self, parser):
        parser.add_argument("--source", required=True, help="the only source this key may send as, e.g. web_app")
        parser.add_argument("--name", required=True, help="who uses it, e.g. 'shop feedback widget'")
        parser.add_argument("--origins", default="", help="comma-separated browser origins allowed to use it (CORS)")
        parser.add_argument("--rate", type=int, default=None, help="demands per minute (default 600)")
        parser.add_argument("--burst", type=int, default=None, help="demands accepted at once (default 100)")
        parser.add_argument("--quiet", action="store_true", help="print only the key (for scripts)")

    def handle(self, *args, **options):
        try:
            api_key, plain = api_key_create(
                name=options["name"], source=options["source"], allowed_origins=options["origins"].replace(",", "\n"),
                rate_per_minute=options["rate"], burst=options["burst"],
            )
        except ValidationError as exc:
            raise CommandError("; ".join(f"{field}: {' '.join(errors)}" for field, errors in exc.message_dict.items())) from exc
        if options["quiet"]:
            self.stdout.write(plain)
            return
        self.stdout.write(self.style.SUCCESS(f"API key for source {api_key.source!r} ({api_key.name}) — shown only now:"))
        self.stdout.write(plain)
        self.stdout.write(
            f"Use: curl -X POST http://127.0.0.1:8000/api/ingest/ -H 'Authorization: Bearer {plain}' "
            "-H 'Content-Type: application/json' -d '{\"id\": \"1\", \"type\": \"user_feedback\", "
            "\"content\": \"…\", \"timestamp\": \"2025-04-05T10:30:00Z\"}'"
        )
