"""The child process saved sources render in (activities.render): `_Child` starts it with `python -c`
and sends it requests; `_serve`, its entry point, answers each under a time and a memory limit."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from activities.render import TEMPLATES_DIR, Renderer, TemplateProblem, _line, _TooLong

STARTUP_TIMEOUT = 60.0  # seconds a new child may take to import what it needs (a loaded CI machine)


class _Child:
    """One process rendering saved sources for this one: replaced when a render outlives `timeout`
    (killed: a loop in a template cannot be interrupted otherwise) or dies (past `memory`). Started
    with `python -c`, not multiprocessing: a spawned child would import the parent's main script."""

    def __init__(self, timeout: float, memory: int) -> None:
        self.timeout, self.memory = timeout, memory
        self.lock = threading.Lock()  # one request at a time on the pipes
        self.process: subprocess.Popen | None = None
        self.to_child: Connection | None = None
        self.from_child: Connection | None = None

    def call(self, request: tuple) -> Any:
        with self.lock:
            if self.process is None or self.process.poll() is not None:
                self._start()
            try:
                self.to_child.send(request)  # type: ignore[union-attr]
            except OSError:  # it died since its last render: a new one, once
                self.stop()
                self._start()
                self.to_child.send(request)  # type: ignore[union-attr]
            if not self.from_child.poll(self.timeout + 1.0):  # the child's own alarm comes first  # type: ignore[union-attr]
                self.stop()
                raise TemplateProblem(f"rendering took longer than {self.timeout:g} s: stopped")
            try:
                kind, value = self.from_child.recv()  # type: ignore[union-attr]
            except (EOFError, OSError):
                self.stop()
                raise TemplateProblem("the render was stopped: it needed more memory or time than a render may use") \
                from None
        if kind == "problem":
            raise TemplateProblem(*value)
        return value

    def _start(self) -> None:
        theirs_in, ours_out = os.pipe()
        ours_in, theirs_out = os.pipe()
        code = (f"from activities.render_sandbox import _serve; "
                f"_serve({theirs_in}, {theirs_out}, {self.memory}, {self.timeout})")
        self.process = subprocess.Popen([sys.executable, "-c", code], cwd=TEMPLATES_DIR.parent,
                                        pass_fds=(theirs_in, theirs_out), stdin=subprocess.DEVNULL)
        os.close(theirs_in)
        os.close(theirs_out)
        self.to_child, self.from_child = Connection(ours_out, readable=False), Connection(ours_in, writable=False)
        if not self.from_child.poll(STARTUP_TIMEOUT) or self.from_child.recv() != "ready":
            self.stop()
            raise RuntimeError("the template rendering process did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.to_child.close()  # type: ignore[union-attr]
            self.from_child.close()  # type: ignore[union-attr]
        self.process = self.to_child = self.from_child = None

    def __del__(self) -> None:  # its input closes with us and it would end anyway: reap it now
        with contextlib.suppress(Exception):
            self.stop()


def _serve(fd_in: int, fd_out: int, memory: int, timeout: float) -> None:
    """The child: answer ("ok", result) or ("problem", (message, field, line, reason)) until its input
    closes. Its alarm stops a render at `timeout` where it is (the line is known then); one stuck in C
    code is killed by the parent, and by the kernel past 3 × `timeout` of CPU (an orphan never spins)."""
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    resource.setrlimit(resource.RLIMIT_AS, (memory if hard == resource.RLIM_INFINITY else min(memory, hard), hard))

    def too_long(*_: Any) -> None:
        raise _TooLong(f"took longer than {timeout:g} s")

    signal.signal(signal.SIGALRM, too_long)
    requests, answers = Connection(fd_in, writable=False), Connection(fd_out, readable=False)
    renderers: dict[tuple[Path, int], Renderer] = {}
    answers.send("ready")
    while True:
        try:
            operation, directory, max_size, args = requests.recv()
        except (EOFError, OSError):
            return
        signal.setitimer(signal.ITIMER_VIRTUAL, 3 * timeout)  # SIGVTALRM's default action ends the process
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            if operation not in ("render_source", "variables_of"):
                raise TypeError(f"no operation {operation!r}")
            renderer = renderers.get((directory, max_size))
            if renderer is None:
                renderer = renderers[(directory, max_size)] = Renderer(directory, isolated=False, max_size=max_size)
            answer: tuple = ("ok", getattr(renderer, operation)(*args))
        except TemplateProblem as err:
            answer = ("problem", (str(err), err.field, err.line, err.reason))
        except (Exception, _TooLong) as err:  # noqa: BLE001 (whatever an untrusted template raises is its problem)
            answer = ("problem", (f"{type(err).__name__}: {err}", None, _line(err), None))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        answers.send(answer)
