"""Archiving and retention: closed demands leave the working set after ARCHIVE_AFTER_DAYS
(`services.archive_due`, a step of the monitor tick and `archive_demands`), stay searchable and
restorable, and are purged after RETENTION_DAYS only once exported (`retention`, `purge_archived`).
"""
