"""Run :func:`~vistudio.ml.training.trainer.train` in a child process.

The child is started with the ``spawn`` method: it shares no torch, CUDA or thread state with the
worker that started it, and a crash or an out-of-memory kill ends only the child. It sends plain
dict messages up a one-way pipe (``start``, ``step``, ``progress``, ``epoch``, ``checkpoint``, then
``done`` or ``error``); the parent asks for a graceful stop through an Event. The parent keeps no copy of the
pipe's sending end, so the child's death is seen as end-of-file, never as a hang. A child whose
parent dies exits at once: nobody would record what it does.

A config with ``devices`` N > 1 trains with Lightning DDP: N children are started, one per rank,
each with the environment of an externally launched DDP process (``MASTER_ADDR``/``MASTER_PORT``
on this machine, ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``), which Lightning joins instead of
launching processes itself (its ``ddp`` launcher re-runs ``sys.argv``, meaningless in a worker;
``ddp_spawn`` would keep rank 0's results in a process of its own). Rank 0 sends the messages
above; every rank has a pipe of its own for its ``error``. They all read the same stop Event and
agree on a stop at the same step (``Reporter._agree``). A rank that dies or fails would leave the
others waiting in a collective: the parent then kills them all and reports that rank's error.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import multiprocessing.connection
import multiprocessing.process
import os
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from vistudio.ml.training.callbacks import TrainingCallbacks
from vistudio.ml.training.trainer import TrainSpec

TRACEBACK_CHARS = 4000
# after rank 0 ended (done, failed or killed), how long the other DDP ranks get to exit on their
# own before they are killed: one left waiting for rank 0 in a collective would never exit
RANK_EXIT_GRACE_SECONDS = 30.0


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


def _peer_lost(exc: BaseException) -> bool:
    """Whether ``exc`` is a DDP collective that failed because another process went away (gloo
    or NCCL report it as a RuntimeError naming the connection): that process's error is the cause."""
    try:
        import torch.distributed

        if isinstance(exc, torch.distributed.DistError):
            return True
    except Exception:  # torch itself failed to import: not a collective
        return False
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        word in text for word in ("gloo", "NCCL", "Connection reset by peer", "Connection closed by peer")
    )


def _child_main(
    spec: TrainSpec,
    conn: multiprocessing.connection.Connection,
    stop: Any,
    env: dict[str, str] | None = None,
) -> None:
    # Ctrl-C in a terminal reaches the whole process group: the parent turns it into a graceful
    # stop (the Event), so the child must not die of it mid-batch and be recorded as failed
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()
    os.environ.update(env or {})  # a DDP rank's place (before Lightning reads it)
    from vistudio.ml.training.trainer import train

    try:
        result = train(spec, _PipeCallbacks(conn, stop))
    except BaseException as exc:
        tb = traceback.format_exc()
        error = {
            "peer_lost": _peer_lost(exc),
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


def world_size(spec: TrainSpec) -> int:
    """How many processes ``spec`` trains with (its config's ``devices``; validated by ``train``)."""
    try:
        return max(1, int(spec.config.get("devices") or 1))
    except (TypeError, ValueError):
        return 1  # the child's validation names the bad value


def free_port() -> int:
    """A TCP port free on this machine now, for the DDP processes to meet on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TrainingProcess:
    """One training in spawned children (one, or one per DDP rank): ``start``, ``poll`` for
    messages, ``request_stop``, ``kill``."""

    def __init__(self, spec: TrainSpec, *, target: Callable[..., None] | None = None) -> None:
        """``target``: the children's entry point, ``_child_main`` or a wrapper of it with the same
        arguments (a test registers a model of its own in the child first)."""
        ctx = multiprocessing.get_context("spawn")
        self._stop = ctx.Event()
        self.world = world_size(spec)
        port = free_port() if self.world > 1 else 0
        self._conns: list[multiprocessing.connection.Connection] = []
        self._child_conns: list[multiprocessing.connection.Connection] = []
        self.processes: list[multiprocessing.process.BaseProcess] = []
        for rank in range(self.world):
            conn, child_conn = ctx.Pipe(duplex=False)
            env = None
            if self.world > 1:
                env = {
                    "MASTER_ADDR": "127.0.0.1",
                    "MASTER_PORT": str(port),
                    "WORLD_SIZE": str(self.world),
                    "RANK": str(rank),
                    "LOCAL_RANK": str(rank),
                    "NODE_RANK": "0",
                }
            # not a daemon: a daemonic process may not start DataLoader worker processes
            process = ctx.Process(
                target=target or _child_main,
                args=(dataclasses.replace(spec, rank=rank), child_conn, self._stop, env),
                name="vistudio-train" if rank == 0 else f"vistudio-train-{rank}",
                daemon=False,
            )
            self._conns.append(conn)
            self._child_conns.append(child_conn)
            self.processes.append(process)
        self.process = self.processes[0]  # rank 0: the one that reports
        self._open = set(range(self.world))  # ranks whose pipe is still open
        self.closed = False  # every child's end of its pipe is closed (they exited or are exiting)
        self._failed = False  # a rank failed: the others were killed
        self._ended: set[int] = set()  # ranks > 0 whose pipe closed, exit code not judged yet
        self._rank0_ended: float | None = None
        self._held: dict[str, Any] | None = None  # a rank's "connection to a peer lost" error
        self._reported = False  # a DDP rank's error (the reason of the failure) was given
        self._killed: set[int] = set()  # ranks killed by _fail

    def start(self) -> None:
        for process in self.processes:
            process.start()
        for child_conn in self._child_conns:
            child_conn.close()  # only the children hold the sending ends now
        self._child_conns = []

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def poll(self, timeout: float) -> list[dict[str, Any]]:
        """Messages that arrived within ``timeout`` seconds (all of those waiting, at least).

        In a DDP run: rank 0's messages, and the ``error`` of another rank that failed or died
        (then every rank is killed: the others would wait for it in a collective)."""
        out: list[dict[str, Any]] = []
        if self.closed:
            time.sleep(min(timeout, 0.05))
            return out
        conns = {self._conns[r]: r for r in self._open}
        for ready in multiprocessing.connection.wait(list(conns), timeout):
            assert isinstance(ready, multiprocessing.connection.Connection)
            rank = conns[ready]
            try:
                while ready.poll(0):
                    msg = ready.recv()
                    if msg.get("type") == "error" and self.world > 1:
                        if rank == 0 or self._running():  # not a late one after rank 0 ended
                            self._rank_error(rank, msg, out)
                    elif rank == 0:
                        out.append(msg)
            except (EOFError, OSError):
                self._open.discard(rank)
                if rank:
                    self._ended.add(rank)
        self._judge(out)
        if 0 not in self._open and self.world > 1:
            self._reap()
        self.closed = not self._open
        if self.closed and self._held is not None and not self._reported:
            out.append(self._held)  # the only account of what went wrong
        return out

    def _rank_error(self, rank: int, msg: dict[str, Any], out: list[dict[str, Any]]) -> None:
        """A DDP rank failed. A broken connection to another rank is a consequence, not the
        cause: it is kept back (and given only when nothing better comes); the first other error,
        or the death of a rank, is the reason given. Every rank is then killed."""
        if msg["error"].get("peer_lost"):
            if self._held is None:
                self._held = msg
        elif not self._reported:
            self._reported = True
            out.append(msg)
        self._fail()

    def _reap(self) -> None:
        """Rank 0 has ended: the other ranks get :data:`RANK_EXIT_GRACE_SECONDS` to exit."""
        if self._rank0_ended is None:
            self._rank0_ended = time.monotonic()
        elif time.monotonic() - self._rank0_ended > RANK_EXIT_GRACE_SECONDS:
            for process in self.processes[1:]:
                if process.is_alive():
                    process.kill()

    def _running(self) -> bool:
        """Rank 0 has not ended and no rank failed: a rank's death now leaves the others waiting."""
        return 0 in self._open and not self._failed

    def _judge(self, out: list[dict[str, Any]]) -> None:
        """Ranks > 0 whose pipe closed: once exited, fine with exit code 0, fatal for the run if
        not (while rank 0 still trains). A process takes a moment to exit after its pipe closes."""
        for rank in sorted(self._ended):
            process = self.processes[rank]
            if process.is_alive() and self._running():
                continue
            self._ended.discard(rank)
            code = process.exitcode
            # a death after rank 0 ended, or after a failure the reason of which is given, or
            # one of ours (we kill every rank on a failure) tells nothing more
            cause = self._running() or (self._held is not None and not self._reported)
            if code == 0 or code is None or rank in self._killed or not cause:
                continue
            why = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            message = f"the training process of rank {rank} of {self.world} died ({why})"
            error = {"type": "RankDied", "message": message, "traceback": ""}
            self._rank_error(rank, {"type": "error", "error": error}, out)

    def _fail(self) -> None:
        self._failed = True
        for rank, process in enumerate(self.processes):
            if process.is_alive():
                process.kill()
                self._killed.add(rank)

    def request_stop(self) -> None:
        self._stop.set()

    def finished(self) -> bool:
        """Every pipe is closed and every process has exited."""
        if not self.closed:
            return False
        for process in self.processes:
            process.join(timeout=0.1)
        return not any(p.is_alive() for p in self.processes)

    @property
    def exitcode(self) -> int | None:
        return self.process.exitcode

    def kill(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.kill()
        for process in self.processes:
            process.join(timeout=30)
        for conn in self._conns:
            conn.close()
        self._open.clear()
        self.closed = True
