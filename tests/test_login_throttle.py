"""Sign-in throttling on the dashboard's and the admin's login pages."""

import pytest
from django.conf import settings

from demands import login_throttle

pytestmark = pytest.mark.django_db

@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # Many sign-ins per test: the default PBKDF2 work factor would make these the suite's slowest.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# Documentation addresses (RFC 5737): only REMOTE_ADDR strings in the request, no traffic.
HOME, ELSEWHERE = "203.0.113.7", "203.0.113.99"


def sign_in(client, username, password, *, address=HOME, url="/login/"):
    return client.post(url, {"username": username, "password": password}, REMOTE_ADDR=address)


def fail(client, username, times, **kwargs):
    for _ in range(times):
        response = sign_in(client, username, "wrong-password", **kwargs)
        assert response.status_code == 200 and "_auth_user_id" not in client.session


def test_after_five_failures_even_the_right_password_is_refused_with_a_clear_message(client, staff_user):
    fail(client, "triager", settings.LOGIN_THROTTLE_FAILURES)
    response = sign_in(client, "triager", "pw-triager-123")
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session
    assert "Too many failed sign-in attempts" in response.content.decode()
    assert "Try again in 15 minutes" in response.content.decode()


def test_four_failures_then_the_right_password_signs_in_and_clears_the_count(client, staff_user):
    fail(client, "triager", settings.LOGIN_THROTTLE_FAILURES - 1)
    assert sign_in(client, "triager", "pw-triager-123").status_code == 302
    client.logout()
    fail(client, "triager", settings.LOGIN_THROTTLE_FAILURES - 1)  # counting starts again
    assert sign_in(client, "triager", "pw-triager-123").status_code == 302


def test_throttle_is_per_username_and_address(client, staff_user, viewer_user):
    fail(client, "Triager ", settings.LOGIN_THROTTLE_FAILURES)  # case and spaces do not make a new key
    assert "Too many" in sign_in(client, "triager", "pw-triager-123").content.decode()
    assert sign_in(client, "triager", "pw-triager-123", address=ELSEWHERE).status_code == 302
    client.logout()
    assert sign_in(client, "viewer", "pw-viewer-123").status_code == 302


def test_attempts_are_allowed_again_after_the_window(client, staff_user, monkeypatch):
    clock = {"now": 1_000_000.0}
    monkeypatch.setattr(login_throttle, "_now", lambda: clock["now"])
    fail(client, "triager", settings.LOGIN_THROTTLE_FAILURES)
    clock["now"] += settings.LOGIN_THROTTLE_WINDOW - 60
    assert "Try again in 1 minute" in sign_in(client, "triager", "pw-triager-123").content.decode()
    clock["now"] += 61
    assert sign_in(client, "triager", "pw-triager-123").status_code == 302


def test_admin_login_shares_the_throttle(client, django_user_model):
    django_user_model.objects.create_superuser(username="root", password="pw-root-123")
    fail(client, "root", settings.LOGIN_THROTTLE_FAILURES, url="/admin/login/")
    response = sign_in(client, "root", "pw-root-123", url="/admin/login/")
    assert "Too many failed sign-in attempts" in response.content.decode()
    assert "Too many" in sign_in(client, "root", "pw-root-123").content.decode()  # the dashboard's too
