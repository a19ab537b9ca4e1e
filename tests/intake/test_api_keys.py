"""Key management: the admin shows the plain key once; the command prints a working key."""

import io
import json
import re

import pytest
from django.core.management import CommandError, call_command

from demands.intake import keys
from demands.models import SourceApiKey

from ..conftest import REFERENCE

pytestmark = pytest.mark.django_db
KEY = re.compile(r"umk_[0-9a-f]{8}_[A-Za-z0-9_\-]{43}")


def works(client, plain) -> bool:
    response = client.post("/api/ingest/", data=json.dumps(REFERENCE), content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {plain}")
    return response.status_code == 202


def test_admin_add_shows_the_plain_key_once_and_stores_only_its_hash(admin_client, admin_user, client, delivery):
    response = admin_client.post(
        "/admin/demands/sourceapikey/add/",
        {"name": "shop widget", "source": "web_app", "allowed_origins": "https://shop.example.com", "rate_per_minute": 60, "burst": 10},
    )
    assert response.status_code == 200
    [plain] = set(KEY.findall(response.content.decode()))
    api_key = SourceApiKey.objects.get()
    assert (api_key.source, api_key.created_by, api_key.rate_per_minute) == ("web_app", admin_user, 60)
    assert api_key.key_hash == keys._hash_key(plain)
    assert plain not in admin_client.get(f"/admin/demands/sourceapikey/{api_key.pk}/change/").content.decode()
    assert plain not in admin_client.get("/admin/demands/sourceapikey/").content.decode()
    assert works(client, plain)


def test_admin_refuses_a_source_name_messages_could_not_carry(admin_client):
    response = admin_client.post("/admin/demands/sourceapikey/add/", {"name": "x", "source": "web app!", "rate_per_minute": 60, "burst": 10})
    assert response.status_code == 200
    assert not SourceApiKey.objects.exists()


def test_admin_revoke_action_stops_the_key(admin_client, admin_user, client, delivery):
    api_key, plain = keys.api_key_create(name="old", source="web_app")
    admin_client.post("/admin/demands/sourceapikey/", {"action": "revoke_selected", "_selected_action": [api_key.pk]})
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None and api_key.revoked_by == admin_user
    assert not works(client, plain)


def test_create_api_key_command_prints_a_working_key_for_its_source(client, delivery):
    out = io.StringIO()
    call_command("create_api_key", "--source", "web_app", "--name", "cli", "--origins", "https://a.example,https://b.example",
                 "--rate", "30", stdout=out)
    [plain] = set(KEY.findall(out.getvalue()))
    api_key = SourceApiKey.objects.get()
    assert (api_key.name, api_key.rate_per_minute, api_key.origins) == ("cli", 30, ["https://a.example", "https://b.example"])
    assert works(client, plain)


def test_create_api_key_quiet_prints_only_the_key():
    out = io.StringIO()
    call_command("create_api_key", "--source", "web_app", "--name", "cli", "--quiet", stdout=out)
    assert KEY.fullmatch(out.getvalue().strip())


def test_create_api_key_refuses_a_bad_source():
    with pytest.raises(CommandError, match="source"):
        call_command("create_api_key", "--source", "bad source", "--name", "x", stdout=io.StringIO())
    assert not SourceApiKey.objects.exists()
