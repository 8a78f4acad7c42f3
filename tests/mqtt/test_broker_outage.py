"""The broker is never on the safety path: killed mid-injection, the injection goes on unaffected and
the bridge reconnects when the broker comes back. Also: authentication, and options refused with an
error naming the field, the value and the allowed form."""

from __future__ import annotations

import asyncio
import subprocess

import aiomqtt
import pytest
from pydantic import SecretStr

from hil.mosquitto import Mosquitto, MosquittoError, find_binary, make_test_certificates
from host.client import DeviceClient
from host.mqtt import MqttOptions, MqttOptionsError
from host.settings import MqttSettings, TlsSettings
from protocol import EventKind, State, StopReason, StopSource
from tests.host.conftest import continuous_arm, next_matching
from tests.mqtt.conftest import RIG, mosquitto_pub, running_bridge, until, watching

SimPty = tuple[subprocess.Popen[str], str]


async def test_broker_killed_mid_injection_changes_nothing_then_the_bridge_reconnects(
    broker: Mosquitto, sim_pty: SimPty
):
    _proc, port = sim_pty
    async with (
        DeviceClient.open(port) as ctl,
        running_bridge(ctl, broker.url) as rb,
        ctl.events() as events,
        ctl.telemetry() as telemetry,
    ):
        await ctl.arm(continuous_arm())
        await ctl.start()
        await ctl.wait_for_state(State.INJECTING, timeout=5)

        await asyncio.to_thread(broker.kill)
        await until(lambda: not rb.bridge.connected, what="the bridge noticing the outage")
        at_kill = float((await telemetry.get(timeout=2)).samples["delivered_nl"][-1])

        async def volume_after(minimum_nl: float) -> float:
            while True:
                batch = await telemetry.get(timeout=2)
                volume = float(batch.samples["delivered_nl"][-1])
                if volume >= minimum_nl:
                    return volume

        # the pump goes on delivering at the planned 6 mL/min (100 nL/ms) while the broker is away
        later = await volume_after(at_kill + 30_000)  # 0.03 mL more
        assert later > at_kill
        assert [e for e in _drain(events) if e.kind == EventKind.STOP] == [], "no stop during the outage"
        assert ctl.state == State.INJECTING
        assert rb.bridge.counters.reconnects == 0

        await asyncio.to_thread(broker.restart)
        await rb.bridge.wait_connected(timeout=10)
        assert rb.bridge.counters.reconnects == 1
        assert ctl.state == State.INJECTING, "the broker coming back starts nothing and stops nothing"
        assert any("connection lost" in line for line in rb.log), rb.log

        # and the stop topic works again: the subscription was renewed on the new connection
        async with watching(broker) as w:
            state = await w.next("state", lambda m: m.retain)  # republished, retained, on reconnect
            assert b'"INJECTING"' in state.payload
            await mosquitto_pub(broker, f"cementguard/{RIG}/fluoro/stop", "-m", "{}")
            stop = await next_matching(events, lambda e: e.kind == EventKind.STOP, within_s=5)
            assert (stop.reason, stop.source) == (StopReason.FLUORO_STOP, StopSource.FLUORO_REMOTE)
            assert stop.delivered_nl > later


def _drain(events):
    out = []
    while (e := events.get_nowait()) is not None:
        out.append(e)
    return out


async def test_username_and_password_against_a_password_file(tmp_path, sim_pty: SimPty):
    _proc, port = sim_pty
    with Mosquitto.start(tmp_path / "auth", users={"bench": "s3cret-pw"}) as broker:
        with pytest.raises(AssertionError, match="not authori"):
            await mosquitto_pub(broker, "x", "-m", "1")  # the broker refuses anonymous clients
        async with DeviceClient.open(port) as ctl:
            async with running_bridge(
                ctl, broker.url, username="bench", password="wrong", connect=False
            ) as rb:
                await until(lambda: len(rb.log) >= 2, what="two refused attempts logged")
                assert not rb.bridge.connected
                assert any("not authori" in line.lower() or "bad user" in line.lower() for line in rb.log), (
                    rb.log
                )
                assert not any("wrong" in line for line in rb.log), "the password is never logged"
            async with running_bridge(ctl, broker.url, username="bench", password="s3cret-pw") as rb:
                assert rb.bridge.connected
                assert "s3cret" not in repr(rb.bridge.options)
                async with watching(broker, username="bench", password="s3cret-pw") as w:
                    await w.next("state")


async def test_tls_with_the_labs_ca_and_refused_without_it(tmp_path, sim_pty: SimPty) -> None:
    files = make_test_certificates(tmp_path / "pki")
    _proc, port = sim_pty
    with Mosquitto.start(tmp_path / "tls", tls=files) as broker:
        assert broker.url.startswith("mqtts://")
        async with DeviceClient.open(port) as ctl:
            async with running_bridge(ctl, broker.url, connect=False) as rb:  # the system CAs only
                await until(lambda: len(rb.log) >= 2, what="two failed TLS attempts logged")
                assert not rb.bridge.connected
                assert any("certificate verify failed" in line.lower() for line in rb.log), rb.log
            async with running_bridge(ctl, broker.url, tls=TlsSettings(ca_file=files.ca_file)) as rb:
                assert rb.bridge.connected
                tls = aiomqtt.TLSParameters(ca_certs=str(files.ca_file))
                async with watching(broker, tls_params=tls) as w:
                    assert b'"connected"' in (await w.next("state")).payload


@pytest.mark.parametrize(
    ("kwargs", "field", "value"),
    [
        ({"url": "http://127.0.0.1:1883"}, "url", "http://127.0.0.1:1883"),
        ({"url": "127.0.0.1:1883"}, "url", "127.0.0.1:1883"),
        ({"url": "mqtt://:1883"}, "url", "mqtt://:1883"),
        ({"url": "mqtt://host:99999"}, "url", "mqtt://host:99999"),
        ({"rig": "rig/1"}, "rig", "rig/1"),
        ({"rig": "rig#"}, "rig", "rig#"),
        ({"rig": ""}, "rig", ""),
        ({"rig": "x" * 65}, "rig", "x" * 65),
        ({"queue_size": 0}, "queue_size", 0),
    ],
)
def test_bad_options_name_field_value_and_allowed_form(kwargs, field, value) -> None:
    args = {"url": "mqtt://127.0.0.1:1883", "rig": RIG, **kwargs}
    with pytest.raises(MqttOptionsError) as info:
        MqttOptions(**args)
    message = str(info.value)
    assert info.value.field == field
    assert f"mqtt {field} {value!r}" in message
    assert "allowed:" in message
    if field == "url":
        assert "mqtt://HOST[:PORT]" in message
    if field == "rig":
        assert "A-Z a-z 0-9 _ . -" in message


def test_options_from_settings_overrides_win_and_hide_the_password() -> None:
    settings = MqttSettings(
        url="mqtt://broker.lab:1884", rig="benchA", username="u", password=SecretStr("pw-xyz")
    )
    opts = MqttOptions.from_settings(settings)
    assert (opts.host, opts.port, opts.rig, opts.username) == ("broker.lab", 1884, "benchA", "u")
    assert opts.password is not None
    assert opts.password.get_secret_value() == "pw-xyz"
    assert "pw-xyz" not in repr(opts)
    assert "pw-xyz" not in opts.describe()
    over = MqttOptions.from_settings(settings, url="mqtts://other:8883", rig="rig2")
    assert (over.host, over.port, over.rig, over.use_tls) == ("other", 8883, "rig2", True)
    with pytest.raises(MqttOptionsError, match="mqtt url None is not set"):
        MqttOptions.from_settings(MqttSettings())


def test_bridge_cli_refuses_a_bad_url_with_exit_2(sim_pty: SimPty) -> None:
    from host.cli import main

    _proc, port = sim_pty
    assert main(["bridge", "--port", port, "--mqtt", "tcp://x:1", "--rig", RIG]) == 2
    assert main(["bridge", "--port", port, "--mqtt", "mqtt://127.0.0.1:1", "--rig", "a b"]) == 2
    assert main(["bridge", "--port", "/dev/cementguard-no-such-port", "--mqtt", "mqtt://127.0.0.1:1"]) == 4


def test_a_missing_broker_binary_is_named(tmp_path) -> None:
    with pytest.raises(MosquittoError, match="'mosquitto-none' not found"):
        find_binary("mosquitto-none")
