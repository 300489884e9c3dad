"""A SIGTERM during the worker's start (cli/worker.py): its SystemExit can be swallowed when it
lands in a finaliser ("Exception ignored in ... __del__", seen in a CI run, after which the worker
started and ran on); the flag it sets makes the start stop anyway."""

from __future__ import annotations

import gc
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from cli import worker


@pytest.fixture(autouse=True)
def fresh_flag() -> Iterator[None]:
    worker._STOP_REQUESTED.clear()
    yield
    worker._STOP_REQUESTED.clear()


class _Finalised:
    def __del__(self) -> None:
        worker._stop_while_starting(signal.SIGTERM, None)  # the signal lands in a finaliser


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the swallowing
def test_a_sigterm_swallowed_by_a_finaliser_still_stops_the_start() -> None:
    assert not worker._stopped_before_start("runtime")
    obj = _Finalised()
    del obj  # the SystemExit is raised in __del__ and swallowed there: execution goes on
    gc.collect()
    assert worker._stopped_before_start("runtime")


def test_faust_gets_the_sigterm_again_once_its_handlers_are_in() -> None:
    received: list[int] = []

    class FaustLike:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.stdout = None

        def install_signal_handlers(self) -> None:
            signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))

    before = signal.getsignal(signal.SIGTERM)
    try:
        cls = worker._stopping_worker(FaustLike, runtime=None)
        cls().install_signal_handlers()
        assert received == []  # no stop was asked: nothing sent
        with pytest.raises(SystemExit):
            worker._stop_while_starting(signal.SIGTERM, None)
        cls().install_signal_handlers()
        deadline = time.monotonic() + 5.0
        while not received and time.monotonic() < deadline:
            time.sleep(0.01)
        assert received == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, before)
