"""中文 everywhere: every catalog entry translated with full-width punctuation, the admin's models
named in Chinese, stored rejection reasons shown in Chinese, and the pages rendered in zh-hans free
of the English words of the interface."""

import re
from html import unescape
from pathlib import Path

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.utils import translation

from demands import schema
from demands.models import Demand
from demands.pipeline.persist import persist_batch
from demands.rejection_reasons import reason_text

from .conftest import REFERENCE, record

LOCALE = Path(__file__).resolve().parents[1] / "locale" / "zh_Hans" / "LC_MESSAGES"
CJK = re.compile(r"[\u4e00-\u9fff]")
# Entries whose Chinese keeps ASCII marks on purpose: they list the characters a name may hold.
ASCII_ON_PURPOSE = ("Letters, digits and . _ - : / only", "[[node id, host:port]", "field '%(field)s' may contain only",
                    "Like “mon-fri 09:00-18:00; sat 10:00-14:00”")  # the business-hours syntax, typed as shown


def po_entries(path: Path) -> list[dict]:
    """(msgctxt, msgid, msgstr…, flags) of each entry of a .po file, the header left out."""
    entries, current, key = [], {}, None
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        if not line.strip():
            if current.get("msgid"):
                entries.append(current)
            current, key = {}, None
            continue
        if line.startswith("#,"):
            current["flags"] = line
        match = re.match(r'^(msgctxt|msgid|msgid_plural|msgstr(?:\[\d+\])?) "(.*)"$', line)
        if match:
            key = match.group(1)
            current[key] = match.group(2)
        elif line.startswith('"') and key:
            current[key] += line[1:-1]
    return entries


@pytest.mark.parametrize("catalog", ["django.po", "djangojs.po"])
def test_every_catalog_entry_has_a_chinese_translation(catalog):
    entries = po_entries(LOCALE / catalog)
    assert len(entries) > 10
    untranslated = [e["msgid"] for e in entries if not any(v for k, v in e.items() if k.startswith("msgstr"))]
    fuzzy = [e["msgid"] for e in entries if "fuzzy" in e.get("flags", "")]
    assert untranslated == [] and fuzzy == []


@pytest.mark.parametrize("catalog", ["django.po", "djangojs.po"])
def test_chinese_translations_use_full_width_punctuation(catalog):
    ascii_marks = []
    for entry in po_entries(LOCALE / catalog):
        if entry["msgid"].startswith(ASCII_ON_PURPOSE):
            continue
        for key, text in entry.items():
            if not key.startswith("msgstr") or not CJK.search(text):
                continue
            bare = re.sub(r"%\(\w+\)[sdif]|https?://|\{\w+\}|\d:\d", "", text)  # placeholders, addresses, times
            if re.search(r"[,;:!?()]", bare):
                ascii_marks.append(text)
    assert ascii_marks == []


def test_the_admin_names_every_model_and_field_of_the_app_in_chinese():
    english = []
    with translation.override("zh-hans"):
        for model in admin.site._registry:
            meta = model._meta
            if meta.app_label != "demands":
                continue
            names = [meta.verbose_name, meta.verbose_name_plural] + [
                field.verbose_name for field in meta.get_fields() if getattr(field, "verbose_name", None) and not field.auto_created
            ]
            english += [f"{model.__name__}: {name}" for name in map(str, names) if not CJK.search(name) and name != "ID"]
    assert english == []


BAD_MESSAGES = [
    None, b"", b"\xff\xfe", b"[1, 2]", b"{", b'{"id": "1"}',
    b'{"id": "1", "type": "t", "source": "s", "content": "", "timestamp": "2025-04-05T10:30:00Z"}',
    b'{"id": "1", "type": "t y", "source": "s", "content": "x", "timestamp": "2025-04-05T10:30:00Z"}',
    b'{"id": "1", "type": "t", "source": "s", "content": "x", "timestamp": "yesterday"}',
    b'{"id": "1", "type": "t", "source": "s", "content": "x", "timestamp": "2025-04-05T10:30:00"}',
    b'{"id": "1", "type": "t", "source": "s", "content": 5, "timestamp": "2025-04-05T10:30:00Z"}',
]


@pytest.mark.parametrize("raw", BAD_MESSAGES)
def test_each_rejection_reason_reads_in_chinese(raw):
    with pytest.raises(schema.InvalidMessage) as raised:
        schema.parse_demand(raw)
    reason = raised.value.reason
    with translation.override("zh-hans"):
        shown = reason_text(reason)
    assert CJK.search(shown), reason
    with translation.override("en"):
        assert reason_text(reason) == reason


# Words of the interface that a Chinese page must not show (as whole words, in the visible text,
# placeholders, titles and aria-labels). Data — contents, types, sources, user names — is not checked.
ENGLISH_UI = [
    "Demands", "Groups", "Rejected", "Monitoring", "Notifications", "Log out", "Status", "Priority", "Type",
    "Source", "Search", "Filter", "Filters", "Clear", "Any", "Apply", "Assignee", "Export", "Newest", "Older",
    "Connecting", "Connected", "Select", "Content", "Received", "Save", "Delete", "Shortcuts", "Menu", "History",
    "Comment", "Team", "Tag", "From", "alive", "dead", "stalled", "caught up", "Backlog", "Lag", "urgent",
    "Remove", "Done", "Views", "Main", "Skip to content", "Pages", "selected",
]
ALLOWED = {"Unified Message Platform", "English", "Kafka", "ID", "CSV", "JSON"}


def visible_text(html: str) -> str:
    html = re.sub(r"<(script|style|template)\b.*?</\1>", " ", html, flags=re.S)
    attributes = " ".join(re.findall(r'(?:placeholder|title|aria-label)="([^"]*)"', html))
    text = re.sub(r"<[^>]+>", " ", html) + " " + attributes
    text = unescape(text)
    for phrase in ALLOWED:
        text = text.replace(phrase, " ")
    return text


@pytest.mark.django_db
def test_the_pages_in_chinese_show_no_english_interface_words(client):
    user = get_user_model().objects.create_superuser("管理员", "admin@example.com", "pw-admin-123")
    client.force_login(user)
    persist_batch([record(REFERENCE, offset=1), record(b"{", offset=2)])
    demand = Demand.objects.get()
    from demands.models import RejectedMessage

    rejected = RejectedMessage.objects.get()
    pages = [
        "/demands/", f"/demands/?group={demand.group_id}&status=new&search=x", "/demands/?type=none-such",
        f"/demands/{demand.pk}/", "/groups/", "/rejected/", f"/rejected/{rejected.pk}/", "/notifications/",
        "/preferences/", "/monitoring/", "/admin/", "/admin/demands/rule/add/", "/admin/demands/demand/",
    ]
    found = {}
    for path in pages:
        response = client.get(path, HTTP_ACCEPT_LANGUAGE="zh-hans")
        assert response.status_code == 200, path
        text = visible_text(response.content.decode())
        words = [word for word in ENGLISH_UI if re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text)]
        if words:
            found[path] = words
    assert found == {}
