import pytest

from demands.pipeline.persist import persist_batch
from demands.models import Demand, DemandEvent, Rule, Status

from .conftest import REFERENCE, record

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_(client, django_user_model):
    admin = django_user_model.objects.create_superuser(username="root", password="pw-root-123")
    client.force_login(admin)
    return client


RULE_FORM = {
    "name": "Slow pages are high", "order": "10", "enabled": "on", "match_types": "user_feedback", "match_sources": "",
    "match_keywords": "慢", "match_regex": "", "set_priority": "high", "add_tags": "", "set_category": "",
    "assign_to": "", "assign_team": "",
}


def test_rule_preview_counts_matches_without_saving(admin_client_):
    persist_batch([record(REFERENCE, offset=0), record({**REFERENCE, "id": "2", "content": "按钮无响应"}, offset=1)])
    response = admin_client_.post("/admin/demands/rule/add/", {**RULE_FORM, "_preview": "1"})
    assert response.status_code == 200
    assert "Would match 1 of the latest 2 demands." in response.content.decode()
    assert Rule.objects.count() == 0


def test_rule_with_invalid_regex_is_refused_with_the_reason(admin_client_):
    response = admin_client_.post("/admin/demands/rule/add/", {**RULE_FORM, "match_regex": "(unclosed"})
    assert response.status_code == 200
    assert "Not a valid regular expression" in response.content.decode()
    assert Rule.objects.count() == 0


def test_rule_without_action_is_refused(admin_client_):
    response = admin_client_.post("/admin/demands/rule/add/", {**RULE_FORM, "set_priority": ""})
    assert "at least one action" in response.content.decode()


def test_saved_rule_applies_to_the_next_ingest(admin_client_):
    response = admin_client_.post("/admin/demands/rule/add/", RULE_FORM)
    assert response.status_code == 302
    persist_batch([record(REFERENCE, offset=0)])
    assert Demand.objects.get().priority == "high"


def test_admin_action_changes_status_through_the_services(admin_client_):
    persist_batch([record(REFERENCE, offset=0)])
    demand = Demand.objects.get()
    admin_client_.post("/admin/demands/demand/", {"action": "set_status_triaged", "_selected_action": [demand.pk]})
    demand.refresh_from_db()
    assert demand.status == Status.TRIAGED and demand.version == 1
    assert DemandEvent.objects.get(demand=demand).new_value == "triaged"


@pytest.mark.parametrize("model", ["demand", "rule", "team", "demandgroup", "demandevent", "savedview", "notification", "userpreference", "rejectedmessage"])
def test_every_model_has_a_working_admin_list(admin_client_, model):
    persist_batch([record(REFERENCE, offset=0), record(b"bad", offset=1)])
    assert admin_client_.get(f"/admin/demands/{model}/").status_code == 200
