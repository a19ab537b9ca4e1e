"""Notifications are written in their recipient's language (UserPreference.language, else
LANGUAGE_CODE), whoever or whatever caused them: a person using another language, a rule at
ingest, the SLA timer running in the deployment's language."""

from datetime import timedelta

import pytest
from django.utils import translation

from demands import services
from demands.models import Demand, Notification, Rule, Team, UserPreference
from demands.pipeline import parse, rules
from demands.pipeline.persist import persist_batch
from demands.pipeline.rules import RuleBook
from demands.sla.escalation import sla_tick
from demands.sla.models import SlaPolicy

from .conftest import REFERENCE, record

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(django_user_model):
    zh = django_user_model.objects.create_user(username="li", password=None, is_staff=True)
    UserPreference.objects.create(user=zh, language="zh-hans")
    en = django_user_model.objects.create_user(username="ann", password=None, is_staff=True)
    UserPreference.objects.create(user=en, language="en")
    plain = django_user_model.objects.create_user(username="bo", password=None, is_staff=True)  # no preference
    boss = django_user_model.objects.create_superuser(username="boss", password=None)
    return zh, en, plain, boss


def text_of(user) -> str:
    return Notification.objects.filter(user=user).latest("id").text


def demand() -> Demand:
    [created] = persist_batch([record({**REFERENCE, "id": f"n{Demand.objects.count()}"}, offset=Demand.objects.count())]).created
    return Demand.objects.get(pk=created.pk)


def test_a_person_writing_english_assigns_to_a_chinese_reader_and_a_team(people, settings):
    zh, en, plain, boss = people
    settings.LANGUAGE_CODE = "en"
    team = Team.objects.create(name="Web")
    team.members.add(zh, en, plain)
    d = demand()
    with translation.override("en"):  # the actor's request language
        services.demand_assign(demand=d, assignee=zh, team=team, actor=boss)
    assert text_of(zh).startswith(f"boss 把需求 #{d.pk} 分派给了你")
    assert text_of(en).startswith(f"boss assigned demand #{d.pk} to your team Web")
    with translation.override("zh-hans"):  # a Chinese actor; a reader without a preference reads the site's language
        services.demand_comment(demand=Demand.objects.get(pk=d.pk), body="看一下", actor=boss)
        services.demand_assign(demand=Demand.objects.get(pk=d.pk), assignee=plain, team=None, actor=boss)
    assert text_of(plain).startswith(f"boss assigned demand #{d.pk} to you")


def test_a_rule_at_ingest_tells_each_reader_in_theirs(people, monkeypatch):
    zh, en, _plain, _boss = people
    monkeypatch.setattr(rules, "RELOAD_EVERY", 0)
    monkeypatch.setattr(parse, "_default_rulebook", RuleBook())
    Rule.objects.create(name="Slow pages", match_keywords="太慢", assign_to=zh)
    with translation.override("en"):  # the consumer's language
        d = demand()
    assert text_of(zh).startswith(f"规则“Slow pages” 把需求 #{d.pk} 分派给了你")


def test_the_sla_timer_reminds_in_the_recipients_language_not_the_deployments(people, settings):
    zh, en, _plain, _boss = people
    settings.LANGUAGE_CODE = "zh-hans"  # the tick runs in this
    SlaPolicy.objects.create(name="Fast", match_priorities="normal", respond_minutes=1, resolve_minutes=None)
    first, second = demand(), demand()
    Demand.objects.filter(pk=first.pk).update(assignee=en)
    Demand.objects.filter(pk=second.pk).update(assignee=zh)
    sla_tick(now=first.received_at + timedelta(minutes=5))
    assert text_of(en).startswith(f"SLA policy “Fast” demand #{first.pk} breached its SLA")
    assert text_of(zh).startswith(f"SLA 策略“Fast” 需求 #{second.pk} 已超出 SLA")
