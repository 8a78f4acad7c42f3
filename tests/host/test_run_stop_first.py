"""`run`'s own STOP (Ctrl-C, SIGTERM, a failed recording) goes out before anything is written to the
terminal or the log: either may block (a terminal paused with Ctrl-S, a stalled disk under the
recording's host.log), and a STOP must never wait behind them (issue 12, "STOP goes first")."""

from __future__ import annotations

import asyncio
import io
import logging
from typing import Any

from rich.console import Console

from host import run
from host.stops import StopRequests
from protocol import Ack, MsgType, State, StopSource


class _OrderedFile(io.StringIO):
    def __init__(self, order: list[str]) -> None:
        super().__init__()
        self.order = order

    def write(self, text: str) -> int:
        self.order.append("console")
        return super().write(text)


class _OrderedHandler(logging.Handler):
    def __init__(self, order: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.order = order

    def emit(self, record: logging.LogRecord) -> None:
        self.order.append("log")


class _Ctl:
    def __init__(self, order: list[str]) -> None:
        self.order = order

    async def stop(self, source: StopSource = StopSource.OPERATOR) -> Any:
        self.order.append("STOP")  # the link writes the frame in this first step (STOP never queues)
        await asyncio.sleep(0)
        return Ack(cmd_id=0, cmd_type=MsgType.STOP, state=State.STOPPED)


def test_the_stop_is_sent_before_the_terminal_or_the_log_is_written() -> None:
    order: list[str] = []
    handler = _OrderedHandler(order)
    logger = logging.getLogger("host.run")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        console = Console(file=_OrderedFile(order), force_terminal=False)
        code = asyncio.run(run._safe_stop(_Ctl(order), console, StopRequests(), "Ctrl-C"))  # type: ignore[arg-type]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert code == run.EXIT_SAFETY_STOP
    assert order[0] == "STOP", order
    assert "console" in order, "the operator is still told"
