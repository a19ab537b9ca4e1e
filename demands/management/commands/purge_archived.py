"""Purge archived demands past retention, each batch exported (JSON Lines + history, gzip) first."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from demands.archive import conf, retention


class Command(BaseCommand):
    help = (
        "Delete archived demands older than RETENTION_DAYS (or --older-than-days), batch by batch; each "
        "batch is written to a gzip'd JSON Lines file (each demand with its history) and fsync'd before "
        "its rows are deleted, in one transaction."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="only count what would be purged")
        parser.add_argument("--batch-size", type=int, default=None, help="demands per batch (default ARCHIVE_BATCH_SIZE, 1000)")
        parser.add_argument("--older-than-days", type=int, default=None, help="archived more than this many days ago (default RETENTION_DAYS)")
        parser.add_argument("--export-dir", default=None, help="where the exports go (default ARCHIVE_EXPORT_DIR)")

    def handle(self, *args, **options):
        days = options["older_than_days"]
        if days is None and conf.get("RETENTION_DAYS") <= 0:
            self.stdout.write("RETENTION_DAYS is 0 (keep archived demands for ever) and no --older-than-days: nothing to do.")
            return
        if days is not None and days < 0:
            raise CommandError("--older-than-days must be 0 or more")
        if options["batch_size"] is not None and options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        if options["dry_run"]:
            result = retention.purge(older_than_days=days, dry_run=True)
            self.stdout.write(f"Dry run: {result.due} archived demand(s) would be exported and purged.")
            return
        export_dir = Path(options["export_dir"]) if options["export_dir"] else None

        def progress(result):
            self.stdout.write(f"purged {result.purged} demand(s); exported to {result.files[-1]}")

        result = retention.purge(older_than_days=days, batch_size=options["batch_size"], export_dir=export_dir, progress=progress)
        self.stdout.write(self.style.SUCCESS(f"Purged {result.purged} archived demand(s) in {len(result.files)} batch(es)."))
