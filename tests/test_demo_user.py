"""demo_user: the local login `make run` prints, which must never rewrite an existing account."""

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def run_demo_user(*args, **env):
    from io import StringIO

    out = StringIO()
    call_command("demo_user", *args, stdout=out)
    return out.getvalue()


def test_a_fresh_database_gets_the_demo_superuser_and_its_login_is_printed(django_user_model):
    output = run_demo_user()
    user = django_user_model.objects.get(username="admin")
    assert user.is_superuser and user.is_staff and user.is_active and user.check_password("umsg-demo")
    assert "username: admin" in output and "umsg-demo" in output


def test_running_it_again_is_idempotent_and_still_prints_the_login(django_user_model):
    run_demo_user()
    output = run_demo_user()
    assert django_user_model.objects.filter(username="admin").count() == 1
    assert "username: admin" in output


def test_an_existing_account_is_left_alone_without_reset(django_user_model, monkeypatch):
    # A production "admin" demoted and deactivated must not come back as an active superuser
    # because someone ran the local-demo command against that database.
    user = django_user_model.objects.create_user(username="admin", password="their-own-password")
    user.is_active = False
    user.save()
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "overwritten")
    output = run_demo_user()
    user.refresh_from_db()
    assert not user.is_active and not user.is_superuser and not user.is_staff
    assert user.check_password("their-own-password")
    assert "left unchanged" in output and "--reset" in output


def test_reset_makes_an_existing_account_the_active_demo_superuser(django_user_model, monkeypatch):
    user = django_user_model.objects.create_user(username="admin", password="their-own-password", is_active=False)
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "chosen-now")
    output = run_demo_user("--reset")
    user.refresh_from_db()
    assert user.is_active and user.is_superuser and user.is_staff and user.check_password("chosen-now")
    assert "chosen-now" in output
