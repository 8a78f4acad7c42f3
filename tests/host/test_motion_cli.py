"""The movements from the host: DeviceClient.prime / withdraw / home / jog / get_motion against the
simulator over a real pty, the `cementguard prime|withdraw|refill|home|jog` commands, and the jog's
hold-to-move loop on an injected clock (SPEC §5.16, §8.6)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from host import cli, motion_cmds
from host.client import DeviceClient
from host.errors import CommandRefused
from host.motion_cmds import JOG_HOLD_MS, JOG_REPEAT_S, KEY_RELEASE_S, JogHold, hold_to_move, key_action
from protocol import NakCode, State, StopReason
from protocol.messages import MotionStatus

SimPty = tuple[subprocess.Popen[str], str]
BORE_UM = 7_290
"""The simulator's default syringe (2.5 mL)."""


async def test_prime_withdraw_home_jog_through_the_client(sim_pty: SimPty):
    _proc, path = sim_pty
    async with DeviceClient.open(path) as ctl:
        start = await ctl.get_motion()
        assert start.last_motion == State.IDLE
        primed = await ctl.prime(syringe_bore_um=BORE_UM, flow_nl_s=100_000, volume_nl=50_000)
        assert isinstance(primed, MotionStatus)
        assert primed.state == State.PRIMING
        assert await ctl.wait_for_motion_end(timeout=5) == State.IDLE
        motion = await ctl.get_motion()
        assert 50_000 <= motion.primed_nl <= 52_000
        assert motion.syringe_bore_um == BORE_UM
        assert (await ctl.get_status()).delivered_nl == 0, "a prime is not an injection"

        back = await ctl.withdraw(syringe_bore_um=BORE_UM, flow_nl_s=100_000, volume_nl=20_000)
        assert back.state == State.WITHDRAWING
        assert await ctl.wait_for_motion_end(timeout=5) == State.IDLE
        assert 20_000 <= (await ctl.get_motion()).withdrawn_nl <= 22_000

        await ctl.home(speed_um_s=5_000)
        assert await ctl.wait_for_motion_end(timeout=5) == State.IDLE
        motion = await ctl.get_motion()
        assert motion.home_um <= motion.plunger_um <= motion.home_um + 20
        with pytest.raises(CommandRefused) as refused:
            await ctl.home(speed_um_s=1_000)
        assert refused.value.code == NakCode.AT_HOME
        assert "at home" in str(refused.value)

        with pytest.raises(CommandRefused) as refused:
            await ctl.jog(speed_um_s=251, hold_ms=100)
        assert refused.value.code == NakCode.BAD_PARAM
        assert "speed_um_s" in str(refused.value)
        assert "250" in str(refused.value)
        await ctl.jog(speed_um_s=200, hold_ms=100)
        assert ctl.state == State.JOGGING
        assert await ctl.wait_for_motion_end(timeout=2) == State.IDLE
        status = await ctl.get_status()
        assert (status.state, status.stop_reason) == (State.IDLE, StopReason.NONE), "a jog ends by itself"


def test_the_commands_report_what_they_did(sim_pty: SimPty, capsys: pytest.CaptureFixture[str]):
    _proc, path = sim_pty
    args = ["--port", path, "--bore-mm", "7.29"]
    assert cli.main(["prime", *args, "--volume-ml", "0.02", "--flow-ml-min", "6"]) == 0
    assert "prime done" in capsys.readouterr().out
    assert cli.main(["refill", *args, "--volume-ml", "0.01", "--flow-ml-min", "6"]) == 0
    assert "0.01" in capsys.readouterr().out
    assert cli.main(["jog", "--port", path, "--for", "0.2", "--speed-mm-s", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "jog done: moved +0.0" in out  # 0.2 s at 0.2 mm/s: 0.04 mm, the last grant cut to the time
    assert cli.main(["withdraw", *args, "--volume-ml", "1"]) == 1
    out = capsys.readouterr().out
    # the room back to home
    assert "BAD_PARAM (volume_nl (field 3) = 1000000 nL is out of range: allowed 1 nL to " in out
    assert cli.main(["home", "--port", path]) == 0
    assert cli.main(["home", "--port", path]) == 1
    assert "AT_HOME" in capsys.readouterr().out
    assert cli.main(["withdraw", *args, "--volume-ml", "0.01"]) == 1
    assert "AT_HOME" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["prime", "--bore-mm", "70", "--volume-ml", "1"],
            "--bore-mm: 70 is outside the range; allowed 2..40 mm",
        ),
        (["prime", "--bore-mm", "7", "--volume-ml", "nan"], "--volume-ml: nan is not a finite number"),
        (["withdraw", "--bore-mm", "7", "--volume-ml", "1", "--flow-ml-min", "0"], "allowed 0.01..10 mL/min"),
        (["home", "--speed-mm-s", "inf"], "--speed-mm-s: inf is not a finite number; allowed 0.01..5 mm/s"),
        (["jog", "--for", "-1"], "--for: -1 is outside the range; allowed 0.05..60 s"),
        (["jog", "--for", "1", "--keys"], "not allowed with argument"),
    ],
)
def test_bad_options_are_refused_with_the_field_value_and_range(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
):
    with pytest.raises(SystemExit) as exited:
        cli.main([argv[0], "--port", "/dev/null", *argv[1:]])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


# -- the jog loop on an injected clock ------------------------------------------------------------------


@dataclass
class FakeJogger:
    """Records each JOG (time, speed, grant) instead of sending it."""

    now: float = 0.0
    jogs: list[tuple[float, int, int]] = field(default_factory=list)
    device: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(watchdog_ms=500))

    async def jog(self, *, speed_um_s: int, hold_ms: int) -> None:
        self.jogs.append((self.now, speed_um_s, hold_ms))


async def test_a_timed_jog_never_grants_motion_past_its_time():
    ctl = FakeJogger()
    hold = JogHold(direction=-1, until=0.3, once=True)

    async def sleep(seconds: float) -> None:
        ctl.now += seconds

    sent, refused = await hold_to_move(ctl, 200, hold, clock=lambda: ctl.now, sleep=sleep)  # type: ignore[arg-type]
    assert refused is None
    assert sent == len(ctl.jogs) >= 3
    assert all(speed == -200 for _t, speed, _h in ctl.jogs)
    ends = [t + hold_ms / 1000 for t, _s, hold_ms in ctl.jogs]
    assert max(ends) == pytest.approx(0.3, abs=0.001)
    assert all(hold_ms <= JOG_HOLD_MS for _t, _s, hold_ms in ctl.jogs)
    gaps = [b[0] - a[0] for a, b in zip(ctl.jogs, ctl.jogs[1:], strict=False)]
    assert all(gap <= JOG_HOLD_MS / 2000 for gap in gaps), "a held jog is renewed before half its grant"


async def test_a_released_key_stops_the_jogs_and_the_grant_bounds_the_motion():
    """f held (terminal repeat every 30 ms) from 0 to 1 s, released, q at 2 s."""
    ctl = FakeJogger()
    hold = JogHold()
    presses = [i * 0.03 for i in range(34)]  # up to 0.99 s

    async def sleep(seconds: float) -> None:
        end = ctl.now + seconds
        while presses and presses[0] <= end:
            key_action("f", hold, presses.pop(0))
        ctl.now = end
        if ctl.now >= 2.0:
            key_action("q", hold, ctl.now)

    key_action("f", hold, 0.0)
    sent, refused = await hold_to_move(ctl, 100, hold, clock=lambda: ctl.now, sleep=sleep)  # type: ignore[arg-type]
    assert refused is None
    last_t, speed, hold_ms = ctl.jogs[-1]
    assert speed == 100
    assert last_t <= 0.99 + KEY_RELEASE_S + JOG_REPEAT_S
    assert last_t + hold_ms / 1000 <= 0.99 + KEY_RELEASE_S + JOG_REPEAT_S + JOG_HOLD_MS / 1000
    assert sent == len(ctl.jogs)


def test_keys_are_parsed_with_arrows_and_quit():
    hold = JogHold()
    key_action("\x1b[B", hold, 1.0)
    assert (hold.direction, hold.held(1.0), hold.held(1.0 + KEY_RELEASE_S + 0.01)) == (-1, -1, 0)
    key_action("+", hold, 2.0)
    assert hold.held(2.0) == 1
    key_action(" ", hold, 2.1)
    assert hold.quit


def test_units_round_to_the_wire():
    assert motion_cmds.bore_um(7.29) == 7_290
    assert motion_cmds.volume_nl(0.05) == 50_000
    assert motion_cmds.flow_nl_s(6.0) == 100_000
    assert motion_cmds.speed_um_s(0.0001) == 1


async def test_the_hil_runner_brings_a_device_in_a_movement_back_to_idle(sim_pty: SimPty):
    """A rig left priming (or in any state this host does not know) is stopped before CLEAR."""
    from hil.runner import _prepare_device

    _proc, path = sim_pty
    async with DeviceClient.open(path) as ctl:
        await ctl.prime(syringe_bore_um=BORE_UM, flow_nl_s=10_000, volume_nl=500_000)
        assert ctl.state == State.PRIMING
        await _prepare_device(ctl)
        status = await ctl.get_status()
        assert status.state == State.IDLE


def test_jog_keys_in_a_real_terminal_moves_while_held_and_restores_the_terminal(sim_pty: SimPty):
    """`cementguard jog --keys` as a child on a pty: 'f' bytes as a terminal's auto-repeat sends
    them while the key is held (until the program says it jogs, then 0.2 s more), then released
    (it says so), then q. It moved forward, reports it, exits 0 and leaves the terminal's line
    discipline as it found it."""
    import os
    import pty
    import select
    import sys
    import termios
    from pathlib import Path

    _proc, path = sim_pty
    exe = Path(sys.executable).with_name("cementguard")
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    child = subprocess.Popen(
        [str(exe), "jog", "--port", path, "--keys", "--speed-mm-s", "0.2"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        close_fds=True,
    )
    out = b""

    def read_until(marker: bytes, within_s: float) -> bytes:
        nonlocal out
        while marker not in out:
            readable, _, _ = select.select([master], [], [], within_s)
            if not readable:
                break
            out += os.read(master, 4096)
        return out

    try:
        assert b"release to stop" in read_until(b"release to stop", 10.0), out
        os.write(master, b"f")
        while b"jogging forward" not in read_until(b"jogging forward", 0.04):  # held: auto-repeat
            assert len(out) < 10_000, out
            os.write(master, b"f")
        for _ in range(5):
            os.write(master, b"f")
            read_until(b"never", 0.04)
        assert b"released" in read_until(b"released", 10.0), out
        os.write(master, b"q")
        assert b"jog done" in read_until(b"jog done", 10.0), out
        assert child.wait(timeout=10) == 0
        after = termios.tcgetattr(slave)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        os.close(master)
    text = out.decode(errors="replace")
    moved = float(text.split("moved ")[1].split(" mm")[0])
    assert moved > 0.05, text  # >= 0.2 s held + the 0.6 s release window at 0.2 mm/s
    assert after[3] == before[3], "the terminal's local modes are restored (no cbreak left behind)"
    os.close(slave)


def test_a_prime_is_stopped_from_another_terminal_through_its_control_endpoint(sim_pty: SimPty):
    """`cementguard prime` serves the port's control endpoint: `cementguard stop` from a second
    process goes through it, and the prime reports the latched stop and exits 1."""
    import sys
    from pathlib import Path

    _proc, path = sim_pty
    exe = str(Path(sys.executable).with_name("cementguard"))
    prime = subprocess.Popen(
        [exe, "prime", "--port", path, "--bore-mm", "7.29", "--volume-ml", "0.5", "--flow-ml-min", "0.6"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert prime.stdout is not None
        first = prime.stdout.readline()
        assert "prime started; stop from any terminal" in first, first
        stop = subprocess.run([exe, "stop", "--port", path], capture_output=True, text=True, timeout=30)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert "through cementguard prime" in stop.stdout, stop.stdout
        rest, _ = prime.communicate(timeout=30)
    finally:
        if prime.poll() is None:
            prime.kill()
            prime.wait()
    assert prime.returncode == 1
    assert "prime ended by a stop: OPERATOR_STOP" in rest, rest


def test_a_stopped_prime_says_its_relief_runs_and_reports_after_relief_done(
    tmp_path: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """An occluded prime stops (PRESSURE_RISE) and the device relieves the line (SPEC §8.6): the
    command says the relief runs, waits for RELIEF_DONE, and only then prints the final line, with
    the back-off and where the plunger rests after it."""
    from pathlib import Path

    from tests.support.wire_client import simulator

    scenario = Path(str(tmp_path)) / "occluded.toml"
    scenario.write_text('[plant]\n[[plant.events]]\nkind = "occlusion"\nat_volume_ml = 0.01\n')
    with simulator("--pty", "--scenario", str(scenario)) as (_proc, path):
        code = cli.main(
            ["prime", "--port", path, "--bore-mm", "7.29", "--volume-ml", "0.5", "--flow-ml-min", "6"]
        )
    out = capsys.readouterr().out
    assert code == 1, out
    running = out.index("prime stopped; pressure relief is running")
    final = out.index("prime ended by a stop: PRESSURE_RISE")
    assert running < final, out
    assert "relief backed off " in out[final:], out
    assert "did not report its end" not in out, out
