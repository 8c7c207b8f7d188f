"""Run :func:`~vistudio.ml.training.trainer.train` in a child process.

The child is started with the ``spawn`` method: it shares no torch, CUDA or thread state with the
worker that started it, and a crash or an out-of-memory kill ends only the child. It sends plain
dict messages up a one-way pipe (``start``, ``step``, ``progress``, ``epoch``, ``checkpoint``, then
``done`` or ``error``); the parent asks for a graceful stop through an Event. The parent keeps no copy of the
pipe's sending end, so the child's death is seen as end-of-file, never as a hang. A child whose
parent dies exits at once: nobody would record what it does.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from vistudio.ml.training.callbacks import TrainingCallbacks
from vistudio.ml.training.trainer import TrainSpec

TRACEBACK_CHARS = 4000


class _PipeCallbacks(TrainingCallbacks):
    def __init__(self, conn: multiprocessing.connection.Connection, stop: Any) -> None:
        self.conn = conn
        self.stop = stop

    def on_start(self, info: dict[str, Any]) -> None:
        self.conn.send({"type": "start", "pid": os.getpid(), "info": info})

    def on_step(self, *, epoch: int, step: int, metrics: dict[str, float]) -> None:
        self.conn.send({"type": "step", "epoch": epoch, "step": step, "metrics": metrics})

    def on_progress(self, live: dict[str, Any]) -> None:
        self.conn.send({"type": "progress", "live": live})

    def on_epoch(
        self, *, epoch: int, step: int, metrics: dict[str, float], details: dict[str, Any], best: bool
    ) -> None:
        self.conn.send(
            {
                "type": "epoch",
                "epoch": epoch,
                "step": step,
                "metrics": metrics,
                "details": details,
                "best": best,
            }
        )

    def on_checkpoint(
        self, *, kind: str, path: Path, epoch: int, step: int, metrics: dict[str, float]
    ) -> None:
        self.conn.send(
            {
                "type": "checkpoint",
                "kind": kind,
                "path": str(path),
                "epoch": epoch,
                "step": step,
                "metrics": metrics,
            }
        )

    def should_stop(self) -> bool:
        return bool(self.stop.is_set())


def _exit_with_parent() -> None:
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(3)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _child_main(spec: TrainSpec, conn: multiprocessing.connection.Connection, stop: Any) -> None:
    # Ctrl-C in a terminal reaches the whole process group: the parent turns it into a graceful
    # stop (the Event), so the child must not die of it mid-batch and be recorded as failed
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()
    from vistudio.ml.training.trainer import train

    try:
        result = train(spec, _PipeCallbacks(conn, stop))
    except BaseException as exc:
        tb = traceback.format_exc()
        error = {
            "type": type(exc).__name__,
            "message": getattr(exc, "message", None) or str(exc) or type(exc).__name__,
            "code": getattr(exc, "code", None),
            "status": getattr(exc, "status", None),
            "details": getattr(exc, "details", None),
            "traceback": tb[-TRACEBACK_CHARS:],
        }
        try:
            conn.send({"type": "error", "error": error})
        finally:
            conn.close()
        os._exit(1)
    conn.send({"type": "done", "result": asdict(result)})
    conn.close()


class TrainingProcess:
    """One training in a spawned child: ``start``, ``poll`` for messages, ``request_stop``, ``kill``."""

    def __init__(self, spec: TrainSpec) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child_conn = ctx.Pipe(duplex=False)
        self._child_conn: multiprocessing.connection.Connection | None = child_conn
        self._stop = ctx.Event()
        # not a daemon: a daemonic process may not start DataLoader worker processes
        self.process = ctx.Process(
            target=_child_main, args=(spec, child_conn, self._stop), name="vistudio-train", daemon=False
        )
        self.closed = False  # the child's end of the pipe is closed (it exited or is exiting)

    def start(self) -> None:
        self.process.start()
        assert self._child_conn is not None
        self._child_conn.close()  # only the child holds the sending end now
        self._child_conn = None

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def poll(self, timeout: float) -> list[dict[str, Any]]:
        """Messages that arrived within ``timeout`` seconds (all of those waiting, at least)."""
        out: list[dict[str, Any]] = []
        if self.closed:
            time.sleep(min(timeout, 0.05))
            return out
        wait = timeout
        try:
            while self._conn.poll(wait):
                out.append(self._conn.recv())
                wait = 0
        except (EOFError, OSError):
            self.closed = True
        return out

    def request_stop(self) -> None:
        self._stop.set()

    def finished(self) -> bool:
        """The pipe is closed and the process has exited."""
        if not self.closed:
            return False
        self.process.join(timeout=0.1)
        return not self.process.is_alive()

    @property
    def exitcode(self) -> int | None:
        return self.process.exitcode

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=30)
        self._conn.close()
        self.closed = True
