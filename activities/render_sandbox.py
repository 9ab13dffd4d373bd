"""The child process saved sources render in (activities.render): `_Child` starts it with `python -c`
and sends it requests; `_serve`, its entry point, answers each under a time and a memory limit.

The child starts with a scrubbed environment (`child_environment`): what Python needs to start and
import the project, never this process's secrets (FOLLOWUPS_*, DATABASE_URL, anything named like a
secret, a password, a key or a token). The sandbox keeps a template from Python's internals; were it
ever escaped, the process it escaped into holds nothing worth taking.

A render stopped from outside (past the time limit, or the child dead) is a RenderTimeout, not a
TemplateProblem: the send step retries it."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from activities.render import TEMPLATES_DIR, Renderer, RenderTimeout, TemplateProblem, _line, _TooLong

STARTUP_TIMEOUT = 60.0  # seconds a new child may take to import what it needs (a loaded CI machine)
# What the child's environment keeps of this process's: Python's start (PATH, the venv, the import
# path), the locale and the time zone database, the temporary directory, HOME. Nothing else.
CHILD_ENVIRONMENT = frozenset({"PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH",
                               "PYTHONHOME", "PYTHONDONTWRITEBYTECODE", "PYTHONUTF8", "PYTHONIOENCODING",
                               "PYTHONTZPATH"})
NEVER_IN_CHILD = ("SECRET", "PASSWORD", "PASSWD", "KEY", "TOKEN", "CREDENTIAL")  # parts of a name, any case
ENVIRONMENT_NAMES = "environment_names"  # a request for the names in the child's os.environ (a test's hook)


def child_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment the rendering child starts with: of `environ`, the names of CHILD_ENVIRONMENT
    and LC_*, less FOLLOWUPS_*, DATABASE_URL and any name with a part of NEVER_IN_CHILD."""
    def kept(name: str) -> bool:
        upper = name.upper()
        if upper.startswith("FOLLOWUPS_") or upper == "DATABASE_URL" or any(p in upper for p in NEVER_IN_CHILD):
            return False
        return name in CHILD_ENVIRONMENT or name.startswith("LC_")
    return {name: value for name, value in environ.items() if kept(name)}


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
                raise RenderTimeout(f"rendering took longer than {self.timeout:g} s: stopped")
            try:
                kind, value = self.from_child.recv()  # type: ignore[union-attr]
            except (EOFError, OSError):
                self.stop()
                raise RenderTimeout("the render was stopped: the rendering process died (past its time or memory "
                                    "limit)") from None
        if kind == "problem":
            raise TemplateProblem(*value)
        if kind == "timeout":
            raise RenderTimeout(*value)
        return value

    def _start(self) -> None:
        theirs_in, ours_out = os.pipe()
        ours_in, theirs_out = os.pipe()
        code = (f"from activities.render_sandbox import _serve; "
                f"_serve({theirs_in}, {theirs_out}, {self.memory}, {self.timeout})")
        self.process = subprocess.Popen([sys.executable, "-c", code], cwd=TEMPLATES_DIR.parent,
                                        env=child_environment(os.environ), pass_fds=(theirs_in, theirs_out),
                                        stdin=subprocess.DEVNULL)
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
    """The child: answer ("ok", result), ("problem", (message, field, line, reason)) (a TemplateProblem)
    or ("timeout", (message, field, line, reason)) (a RenderTimeout: its alarm rang) until its input
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
            if operation == ENVIRONMENT_NAMES:
                answer: tuple = ("ok", sorted(os.environ))
            elif operation not in ("render_source", "variables_of"):
                raise TypeError(f"no operation {operation!r}")
            else:
                renderer = renderers.get((directory, max_size))
                if renderer is None:
                    renderer = renderers[(directory, max_size)] = Renderer(directory, isolated=False,
                                                                           max_size=max_size)
                answer = ("ok", getattr(renderer, operation)(*args))
        except TemplateProblem as err:
            answer = ("problem", (str(err), err.field, err.line, err.reason))
        except RenderTimeout as err:
            answer = ("timeout", (str(err), err.field, err.line, err.reason))
        except _TooLong as err:  # rang outside a part (inlining the CSS)
            answer = ("timeout", (f"the render {err}", None, None, f"the render {err}"))
        except Exception as err:  # noqa: BLE001 (whatever an untrusted template raises is its problem)
            answer = ("problem", (f"{type(err).__name__}: {err}", None, _line(err), None))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        answers.send(answer)
