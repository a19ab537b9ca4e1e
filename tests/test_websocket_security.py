"""Websockets through the real ASGI `application` (origin check, session auth, routing): every
websocket path × every role, and a foreign or missing Origin refused."""

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.test import Client

from demands.pipeline.persist import persist_batch
from demands.routing import websocket_urlpatterns
from unified_msg_site.asgi import application

from .conftest import REFERENCE, record
from .test_permissions import ROLES, STAFF, make_user

pytestmark = pytest.mark.django_db(transaction=True)  # async tests: asyncio_mode = auto

WS_MATRIX = {  # path → who may connect
    "ws/demands/": STAFF,
    "ws/demands/<int:pk>/": STAFF,
    "ws/notifications/": STAFF,
    "ws/monitoring/": STAFF,
}


def test_every_websocket_path_has_a_row():
    routes = {str(pattern.pattern) for pattern in websocket_urlpatterns}
    assert routes == WS_MATRIX.keys()


@sync_to_async
def session_cookie(django_user_model, role_name) -> tuple[str, int]:
    demand = persist_batch([record(REFERENCE, offset=1)]).created[0]
    user = make_user(django_user_model, role_name)
    if user is None:
        return "", demand.pk
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}", demand.pk


async def connect(path: str, *, cookie: str = "", origin: str | None = "http://testserver"):
    headers = [(b"host", b"testserver")]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await communicator.connect(timeout=5)
    await communicator.disconnect()
    return connected, code


@pytest.mark.parametrize("role_name", ROLES)
@pytest.mark.parametrize("route", sorted(WS_MATRIX))
async def test_websocket_matrix(django_user_model, route, role_name):
    cookie, pk = await session_cookie(django_user_model, role_name)
    connected, code = await connect("/" + route.replace("<int:pk>", str(pk)), cookie=cookie)
    assert connected is (role_name in WS_MATRIX[route])
    if not connected:
        assert code == 4403


@pytest.mark.parametrize("origin", ["http://evil.example", "https://umsg.example.com.evil.example", "null", None])
async def test_foreign_or_missing_origin_is_refused_even_for_admins(django_user_model, origin):
    cookie, _ = await session_cookie(django_user_model, "admin")
    connected, _ = await connect("/ws/demands/", cookie=cookie, origin=origin)
    assert not connected
    # …while the same session from the site's own origin gets in: the refusal was the origin.
    assert (await connect("/ws/demands/", cookie=cookie))[0]


async def test_a_forged_or_expired_session_cookie_is_anonymous(django_user_model):
    connected, code = await connect("/ws/demands/", cookie="sessionid=not-a-real-session-key")
    assert not connected and code == 4403


async def test_unknown_websocket_paths_are_refused():
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/admin/")
    with pytest.raises(ValueError, match="No route found"):
        await communicator.connect(timeout=1)
