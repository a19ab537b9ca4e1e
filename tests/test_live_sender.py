"""Broadcasts from a process without websockets (consume_demands) through a network channel layer."""

import asyncio
import threading

from channels.layers import BaseChannelLayer

from demands import live

SENDS: list[tuple[str, dict, asyncio.AbstractEventLoop, str]] = []


class RecordingLayer(BaseChannelLayer):
    """Stands in for the Redis layer: records each group_send and the loop it ran on."""

    extensions = ["groups"]

    async def group_send(self, group, message):
        SENDS.append((group, message, asyncio.get_running_loop(), threading.current_thread().name))


def test_a_network_layer_is_sent_to_on_one_long_lived_loop(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "tests.test_live_sender.RecordingLayer"}}
    SENDS.clear()
    live.group_send("demands", {"type": "demands.created", "rows": [], "more": False})
    live.group_send("user-1", {"type": "user.notify", "html": {"en": "<p>hi</p>"}})
    assert [(group, message["type"]) for group, message, _loop, _thread in SENDS] == [
        ("demands", "demands.created"), ("user-1", "user.notify")
    ]
    # Both on the same loop, still running: one Redis connection for the process, not one a send.
    assert SENDS[0][2] is SENDS[1][2] and SENDS[0][2].is_running()
    assert SENDS[0][3] == "live-broadcasts"
