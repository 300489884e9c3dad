"""`tastegraph worker`: consume the event topics and keep the graph fresh."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import threading
from typing import Any

from config.logs import kv
from config.settings import Settings

log = logging.getLogger("tastegraph.worker")
SHUTDOWN_DEADLINE_S = 30.0  # from SIGTERM to exit, at most


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-batch", type=int, help="records per batch (TASTEGRAPH_MAX_BATCH)")
    parser.add_argument(
        "--max-wait", type=float, help="seconds to wait for a full batch (TASTEGRAPH_MAX_WAIT_S)"
    )
    parser.add_argument(
        "--until-idle",
        type=float,
        metavar="SECONDS",
        help="exit once caught up (no lag) and idle this long (for demos and tests)",
    )
    parser.add_argument("--no-metrics", action="store_true", help="do not serve /metrics")


# set by a SIGTERM that arrives before Faust installs its own handler
_STOP_REQUESTED = threading.Event()


def _stop_while_starting(signum: int, frame: object) -> None:
    # SIGTERM before Faust installs its own handler (loading the model, creating topics): leave
    # through the `finally` below, so the driver closes; nothing was consumed yet. The SystemExit
    # lands wherever the main thread is; where Python swallows it (a finaliser, `__del__`, was
    # running: "Exception ignored in ...", seen in a CI run, and the worker went on to start),
    # the flag makes `run` leave at its next checkpoint instead.
    log.info("stopping before the start %s", kv(signal=signum))
    _STOP_REQUESTED.set()
    raise SystemExit(0)


def _stopped_before_start(step: str) -> bool:
    """True, logged, when a SIGTERM asked to stop before the start (see above)."""
    if _STOP_REQUESTED.is_set():
        log.info("stopped before the start %s", kv(at=step))
        return True
    return False


def _stopping_worker(base: type[Any], runtime: Any) -> type[Any]:
    """Faust's Worker, with a deadline on the shutdown that a SIGTERM starts."""

    class StoppingWorker(base):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if not _is_terminal(self.stdout):
                # Faust's start-up spinner writes cursor escapes (ESC[?25l / ESC[?25h) whether or
                # not the stream is a terminal; without it Faust logs "Ready" instead
                self.spinner = None

        def install_signal_handlers(self) -> None:
            super().install_signal_handlers()
            if _STOP_REQUESTED.is_set():  # a SIGTERM whose SystemExit was swallowed: deliver
                # it again, now to Faust's handler, which shuts down as for any SIGTERM
                log.info("stopping: the SIGTERM of the start, again to Faust")
                os.kill(os.getpid(), signal.SIGTERM)

        async def on_stop(self) -> None:
            runtime.stop.set()
            _exit_after(SHUTDOWN_DEADLINE_S, runtime)
            await super().on_stop()

    return StoppingWorker


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _exit_after(seconds: float, runtime: Any) -> None:
    """Ends the process if the graceful shutdown takes longer than ``seconds``.

    The batch in flight cannot finish while Neo4j is unreachable (its write retries), and Faust
    waits for it before committing: without a deadline the worker would never exit. Exiting here
    is as safe as a crash: the batch was not acknowledged, so it is read again after a restart
    and what was already written is dropped as duplicates.
    """

    def abandon() -> None:
        log.warning(
            "shutdown took longer than %s s: exiting, the batch in flight stays unacknowledged",
            seconds,
        )
        closer = threading.Thread(target=runtime.driver.close, daemon=True)
        closer.start()
        closer.join(5.0)
        if not closer.is_alive():
            log.info("driver closed")
        logging.shutdown()
        os._exit(0)

    timer = threading.Timer(seconds, abandon)
    timer.daemon = True
    timer.start()


def run(args: argparse.Namespace, settings: Settings) -> int:
    from faust.worker import Worker

    from stream.runtime import open_runtime

    signal.signal(signal.SIGTERM, _stop_while_starting)

    overrides = {}
    # `--max-batch 0` is refused like TASTEGRAPH_MAX_BATCH=0, not ignored (replace validates)
    if args.max_batch is not None:
        overrides["max_batch"] = args.max_batch
    if args.max_wait is not None:
        overrides["max_wait_s"] = args.max_wait
    settings = dataclasses.replace(settings, **overrides)
    from stream.app import DeadLetterTopic, add_agents, create_app

    app = create_app(settings)
    runtime = open_runtime(
        settings, dead_letter=DeadLetterTopic(app, settings), serve_metrics=not args.no_metrics
    )
    try:
        from stream.topics import ensure_topics

        if _stopped_before_start("runtime"):
            return 0
        ensure_topics(settings, [*settings.event_topics, settings.topic_dead_letter])
        ensure_topics(settings, [settings.topic_items], compact=True)
        add_agents(app, runtime, args.until_idle)
        if _stopped_before_start("topics"):
            return 0
        log.info(
            "worker starting %s",
            kv(
                kafka=settings.kafka_servers,
                neo4j=settings.neo4j_url,
                model=runtime.encoder.version,
                max_batch=settings.max_batch,
            ),
        )
        worker = _stopping_worker(Worker, runtime)(
            app, loglevel=settings.log_level, quiet=True, override_logging=False
        )
        app._worker = worker  # type: ignore[attr-defined]
        worker.execute_from_commandline()
    finally:
        runtime.close()
    return 0
