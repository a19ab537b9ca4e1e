"""Archiving settings: environment variables with embedded defaults; a Django setting of the same name wins."""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings

_DEFAULTS = {
    # Resolved, rejected and duplicate demands untouched for this many days are archived (0 = never).
    "ARCHIVE_AFTER_DAYS": int(os.environ.get("ARCHIVE_AFTER_DAYS", "30")),
    # Demands archived this many days ago are purged by `purge_archived` after their export (0 = never).
    "RETENTION_DAYS": int(os.environ.get("RETENTION_DAYS", "0")),
    # Most demands one archiving step (one monitor tick) or one purge batch handles.
    "ARCHIVE_BATCH_SIZE": int(os.environ.get("ARCHIVE_BATCH_SIZE", "1000")),
    # Where `purge_archived` writes its exports (JSON Lines, gzip) unless --export-dir says otherwise.
    "ARCHIVE_EXPORT_DIR": os.environ.get("ARCHIVE_EXPORT_DIR", ""),
}


def get(name: str):
    return getattr(settings, name, _DEFAULTS[name])


def export_dir() -> Path:
    return Path(get("ARCHIVE_EXPORT_DIR") or Path(settings.BASE_DIR) / "archive-exports")
