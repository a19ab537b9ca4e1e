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


def test_full_width_look_alikes_of_a_username_share_its_allowance(client, staff_user):
    # Sign-in normalises usernames with NFKC, so "ｔｒｉａｇｅｒ" is the same account as "triager":
    # each spelling must not bring a fresh allowance of guesses.
    fail(client, "ｔｒｉａｇｅｒ", settings.LOGIN_THROTTLE_FAILURES - 1)
    fail(client, "TRIAGER", 1)
    assert "Too many" in sign_in(client, "triager", "pw-triager-123").content.decode()


class InterleavingCache:
    """Django's cache, but another request's whole failure runs in the middle of this one's first
    cache operation: the interleaving two parallel requests can produce."""

    def __init__(self, real, username, address):
        self.real, self.username, self.address, self.interleaved = real, username, address, False

    def __getattr__(self, name):
        operation = getattr(self.real, name)

        def call(*args, **kwargs):
            result = operation(*args, **kwargs)
            if not self.interleaved:
                self.interleaved = True
                login_throttle.record_failure(self.username, self.address)
            return result

        return call


def test_two_failures_at_the_same_moment_both_count(monkeypatch):
    monkeypatch.setattr(login_throttle, "cache", InterleavingCache(login_throttle.cache, "triager", HOME))
    login_throttle.record_failure("triager", HOME)
    monkeypatch.undo()
    for _ in range(settings.LOGIN_THROTTLE_FAILURES - 2):
        login_throttle.record_failure("triager", HOME)
    assert login_throttle.seconds_blocked("triager", HOME) > 0


def test_the_documented_proxy_setting_gives_the_throttle_the_real_client_address():
    # README: nginx `proxy_set_header X-Forwarded-For $remote_addr;` replaces whatever the client
    # sent. daphne --proxy-headers takes the *left-most* entry into REMOTE_ADDR (read in its source),
    # so an appending proxy ($proxy_add_x_forwarded_for) would let the client choose its own address.
    from pathlib import Path

    from daphne.utils import parse_x_forwarded_for

    readme = (Path(settings.BASE_DIR) / "README.md").read_text()
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in readme
    client_sent = b"198.51.100.1"  # forged by the client
    overwritten = {b"X-Forwarded-For": [HOME.encode()]}  # what nginx forwards with $remote_addr
    appended = {b"X-Forwarded-For": [client_sent + b", " + HOME.encode()]}
    assert parse_x_forwarded_for(overwritten, original_addr=["10.0.0.2", 1234])[0][0] == HOME
    assert parse_x_forwarded_for(appended, original_addr=["10.0.0.2", 1234])[0][0] == client_sent.decode()


def test_the_throttle_keys_on_the_address_daphne_puts_in_remote_addr(client, staff_user):
    fail(client, "triager", settings.LOGIN_THROTTLE_FAILURES, address=HOME)
    response = client.post(
        "/login/",
        {"username": "triager", "password": "pw-triager-123"},
        REMOTE_ADDR=HOME,
        HTTP_X_FORWARDED_FOR=ELSEWHERE,  # a header daphne has already consumed must not matter
    )
    assert "Too many" in response.content.decode()
