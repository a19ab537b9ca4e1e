"""Archive every due demand now (the monitor tick does the same a batch at a time)."""

from django.core.management.base import BaseCommand

from demands.archive import conf, services


class Command(BaseCommand):
    help = "Archive resolved, rejected and duplicate demands untouched for ARCHIVE_AFTER_DAYS days, in bounded batches."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=None, help="demands per batch (default ARCHIVE_BATCH_SIZE)")

    def handle(self, *args, **options):
        if conf.get("ARCHIVE_AFTER_DAYS") <= 0:
            self.stdout.write("ARCHIVE_AFTER_DAYS is 0: archiving is off.")
            return
        total = services.archive_all_due(
            batch_size=options["batch_size"], progress=lambda n: self.stdout.write(f"archived {n} demand(s)")
        )
        self.stdout.write(self.style.SUCCESS(f"Archived {total} demand(s)."))
