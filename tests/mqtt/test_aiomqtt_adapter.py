"""host/mqtt/_aiomqtt_adapter.py relies on two things aiomqtt does not document; this fails loudly,
naming what changed, when an aiomqtt release moves either (then re-check the adapter, the stop
latency figures in docs/mqtt.md, and the pin in pyproject.toml)."""

from __future__ import annotations

import asyncio
import inspect
from importlib.metadata import version

import aiomqtt

from host.mqtt._aiomqtt_adapter import TESTED_VERSION, retrieve_disconnect, stamped_queue_type


def test_the_installed_aiomqtt_is_the_one_the_adapter_was_checked_against() -> None:
    assert version("aiomqtt") == TESTED_VERSION, (
        f"aiomqtt {version('aiomqtt')} installed, the adapter was checked against {TESTED_VERSION}: "
        "re-run tests/mqtt and bench/mqtt_stop_latency.py, then update TESTED_VERSION and the pin"
    )


def test_aiomqtt_fills_its_queue_with_put_nowait_from_its_message_callback() -> None:
    """The STOP starts in the socket-read path only if aiomqtt hands each message to the queue with
    put_nowait, from the callback paho calls as it reads the message."""
    assert "queue_type" in inspect.signature(aiomqtt.Client).parameters, "Client(queue_type=) is gone"
    source = inspect.getsource(aiomqtt.Client)
    assert "self._queue = queue_type(" in source, "aiomqtt no longer builds its queue from queue_type"
    callback = inspect.getsource(aiomqtt.Client._on_message)
    assert "self._queue.put_nowait(" in callback, "aiomqtt's message callback no longer calls put_nowait"


async def test_the_stamped_queue_sees_each_message_first_and_bounds_the_rest() -> None:
    seen: list[object] = []
    dropped: list[int] = []
    queue = stamped_queue_type(lambda m, t: seen.append(m), limit=2, on_drop=lambda: dropped.append(1))()
    for item in ("a", "b", "c"):
        queue.put_nowait(item)
    assert seen == ["a", "b", "c"], "every message reaches the hook, a full queue too"
    assert dropped == [1]
    t, first = queue.get_nowait()
    assert first == "a"
    assert isinstance(t, float)


async def test_the_disconnect_future_is_where_the_adapter_looks() -> None:
    client = aiomqtt.Client("localhost")
    done = getattr(client, "_disconnected", None)
    assert isinstance(done, asyncio.Future), "aiomqtt.Client._disconnected is no longer a Future"
    done.set_exception(aiomqtt.MqttError("unexpected disconnection"))
    retrieve_disconnect(client)
    assert done.done()
