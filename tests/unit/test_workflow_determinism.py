"""Nothing in `workflows/` reads the clock, randomness, the environment or the network.

The worker runs journeys without Temporal's sandbox (worker.RUNNER: re-importing per instance and
entering the sandbox per payload cost more than half the CPU of a replay), so nothing at run time
refuses a clock or I/O in a workflow. The rules modules never needed it: they take `now` as an
argument. This test is the guard instead: it reads every module
of the package and refuses any use of what would make a replay differ from the first run, any
way around that refusal it can see (relative and dynamic imports, `getattr` on a module), the
event loop's clock, and iteration in a set's hash order.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"

# Fully qualified names that are never deterministic inside a workflow, or that reach what is not.
# `workflow.now()`, `workflow.uuid4()`, `workflow.random()` and `asyncio.sleep` (a durable timer)
# are the ways to go. A name refuses everything under it: "os" refuses os.environ and os.path.
FORBIDDEN = {
    # the clock
    "datetime.datetime.now", "datetime.datetime.utcnow", "datetime.datetime.today", "datetime.date.today",
    "time.time", "time.time_ns", "time.monotonic", "time.monotonic_ns", "time.perf_counter", "time.sleep",
    # the event loop, whose time() is a clock that replay does not reproduce outside the workflow's own loop
    "asyncio.get_event_loop", "asyncio.get_running_loop", "asyncio.new_event_loop", "asyncio.events",
    # randomness
    "uuid.uuid1", "uuid.uuid4", "secrets", "random",
    # the environment, processes, files and the network
    "os", "sys.modules", "builtins.open", "builtins.input", "io.open", "io.FileIO", "pathlib", "shutil",
    "tempfile", "glob", "subprocess", "signal", "threading", "multiprocessing", "concurrent", "socket",
    "ssl", "select", "selectors", "urllib", "http", "smtplib", "httpx", "requests", "aiohttp", "asyncpg",
    "psycopg", "psycopg2", "sqlite3", "aiosmtplib", "aiosmtpd", "posixpath", "ntpath", "genericpath",
    # this repository's I/O side: workflows reach activities by name (workflows/contracts.py)
    "settings", "activities", "starter", "worker",
    # imports and lookups the two lists above could not see
    "importlib", "builtins.__import__", "builtins.eval", "builtins.exec", "builtins.compile",
}

# A module inside `workflows` named like one of these is refused too: `from ..activities import x`
# written two levels down resolves to workflows.activities, which does not exist (or, once it does,
# is a second I/O side behind a harmless-looking name).
DENIED_MODULE_NAMES = {bad for bad in FORBIDDEN if "." not in bad}

# Builtins the guard reasons about, by the name a module sees them under unless it rebinds them.
BUILTINS = {name: f"builtins.{name}" for name in (
    "open", "input", "getattr", "vars", "__import__", "eval", "exec", "compile", "set", "frozenset", "sorted",
    "min", "max", "any", "all", "len", "list", "tuple", "enumerate", "iter", "next", "zip", "map", "filter")}
BUILTINS["__builtins__"] = "builtins"

# Iterating a set follows its hash order, and a str's hash (so a StrEnum member's) is salted per
# process (PYTHONHASHSEED): a replay on another worker, or after a restart, can see another order
# and schedule commands in another order, which fails the replay. What is refused: a `for`, or a
# list/dict comprehension or generator, over a set; a set handed to something that keeps its order
# (list(), tuple(), enumerate(), zip(), "".join(), *unpacking…). A set is: a set display or set
# comprehension, a set()/frozenset() call, |, &, -, ^ or a set method (union…) on one, a name this
# function (or an enclosing one, or the module) binds to one of those or annotates as set/frozenset,
# and a module-level or class-level set constant of any `workflows` module imported by name
# (LEAD_CLOSED). Allowed: membership (`in`), len(), and the consumers whose result does not depend
# on the order: sorted(), min(), max() (without key=: ties would keep the set's order), any(),
# all(), set(), frozenset(), and a set comprehension.
# What it cannot see: a set behind an attribute (a model field `state.x: set[str]`, a dataclass
# field `kind.closed`), a function's return value, a dict's .keys() view combined with a non-set, a
# set passed through a variable of unknown type, tuple unpacking of a set, side effects inside
# any()/all(), sum() of floats, and a set's repr in an f-string (only messages use that). Those
# need review, not this check.
ORDERLESS = {"builtins.sorted", "builtins.min", "builtins.max", "builtins.any", "builtins.all", "builtins.len",
             "builtins.set", "builtins.frozenset"}
KEYED = {"builtins.sorted", "builtins.min", "builtins.max"}
IN_ORDER = {"builtins.list", "builtins.tuple", "builtins.enumerate", "builtins.iter", "builtins.next",
            "builtins.zip", "builtins.map", "builtins.filter"}
IN_ORDER_METHODS = {"join", "extend", "fromkeys"}
SET_TYPES = {"set", "frozenset", "Set", "FrozenSet", "AbstractSet", "MutableSet"}
SET_METHODS = {"union", "intersection", "difference", "symmetric_difference", "copy"}
SET_OPERATORS = (ast.BitOr, ast.BitAnd, ast.Sub, ast.BitXor)
SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
# The loop's clock under any name a workflow would give the loop: loop, event_loop, self._loop.
LOOPISH = re.compile(r"(^|_)loop$", re.IGNORECASE)


class Scope:
    """The names a function (or class body, or the module) binds, and which of them are sets."""

    def __init__(self, node: ast.AST) -> None:
        self.node = node
        self.bound: set[str] = set()
        self.sets: set[str] = set()


def own_nodes(scope: ast.AST) -> Iterator[ast.AST]:
    """The nodes of a scope, not those of the functions and classes nested in it."""
    stack = list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, SCOPES):
            stack.extend(ast.iter_child_nodes(node))


def set_annotation(annotation: ast.AST | None) -> bool:
    if isinstance(annotation, ast.Subscript):
        annotation = annotation.value
    if isinstance(annotation, ast.Attribute):  # typing.AbstractSet, collections.abc.Set
        return annotation.attr in SET_TYPES
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):  # "set[str]"
        return annotation.value.split("[")[0].strip().rpartition(".")[2] in SET_TYPES
    return isinstance(annotation, ast.Name) and annotation.id in SET_TYPES


class Guard:
    """One module read: every forbidden name it uses, fully qualified through its imports."""

    def __init__(self, source: str, module: str, known_sets: frozenset[str]) -> None:
        self.tree = ast.parse(source)
        self.module = module.removesuffix(".__init__")
        self.package = module.rpartition(".")[0]  # what a relative import starts from
        self.known_sets = known_sets
        self.aliases: dict[str, str] = dict(BUILTINS)
        self.found: list[str] = []

    def flag(self, line: int, what: str) -> None:
        self.found.append(f"line {line}: {what}")

    def check(self, name: str | None, line: int) -> None:
        if name and any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN):
            self.flag(line, name)

    # --- imports ---------------------------------------------------------------------------

    def absolute(self, node: ast.ImportFrom) -> str:
        if node.level == 0:
            return node.module or ""
        parts = self.package.split(".")
        up = node.level - 1
        # Above the top-level package Python raises ImportError, unless the repository root ever
        # becomes a package: resolved from the root, `from ..activities import x` in workflows/ is
        # refused as the `activities` it names, not waved through as unresolvable.
        base = parts[:len(parts) - up] if up < len(parts) else []
        return ".".join([*base, *([node.module] if node.module else [])])

    def read_imports(self) -> None:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    top = alias.name.split(".")[0]
                    self.aliases[alias.asname or top] = alias.name if alias.asname else top
                    self.check(alias.name, node.lineno)
            elif isinstance(node, ast.ImportFrom):
                base = self.absolute(node)
                for alias in node.names:
                    name = ".".join(part for part in (base, alias.name if alias.name != "*" else "") if part)
                    self.aliases[alias.asname or alias.name] = name
                    self.check(name, node.lineno)
                    if node.level and not (name == "workflows" or name.startswith("workflows.")):
                        self.flag(node.lineno, f"relative import out of workflows: {name}")
                    if name.startswith("workflows.") and DENIED_MODULE_NAMES & set(name.split(".")[1:]):
                        self.flag(node.lineno, f"a workflows module named like an I/O module: {name}")
        # The module's own classes, so that a class-level set constant is known by its full name.
        for node in self.tree.body:
            if isinstance(node, ast.ClassDef):
                self.aliases.setdefault(node.name, f"{self.module}.{node.name}")

    # --- names, attributes and dynamic lookups -------------------------------------------------

    def qualified(self, node: ast.AST) -> str | None:
        """`dt.date.today` → datetime.date.today, and `getattr(dt, "date")` the same as `dt.date`."""
        parts = []
        while True:
            if isinstance(node, ast.Attribute):
                parts.append(node.attr)
                node = node.value
            elif (isinstance(node, ast.Call) and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
                  and isinstance(node.args[1].value, str) and self.qualified(node.func) == "builtins.getattr"):
                parts.append(node.args[1].value)
                node = node.args[0]
            else:
                break
        if isinstance(node, ast.Name) and node.id in self.aliases:
            return ".".join([self.aliases[node.id], *reversed(parts)])
        return None

    # Names are resolved through the module's imports (and getattr with a literal name, nested or
    # not). Refused besides: getattr with a computed name, vars() or __dict__ on a module or an
    # imported class, and `.time` on anything named like a loop (loop, event_loop, self._loop, or
    # a call to get_event_loop()). What this cannot see: a module or a function held in a variable
    # (`clock = datetime.now` is seen, `m = datetime` then `m.now()` is not), operator.attrgetter,
    # globals()[...], and a loop under a name that does not say so.
    def read_names(self) -> None:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Attribute | ast.Name) and isinstance(node.ctx, ast.Load):
                self.check(self.qualified(node), node.lineno)
            if isinstance(node, ast.Attribute) and node.attr == "__dict__" and self.qualified(node.value):
                self.flag(node.lineno, f"{self.qualified(node.value)}.__dict__")
            if isinstance(node, ast.Attribute) and node.attr == "time" and self.loopish(node.value):
                self.flag(node.lineno, "loop.time(): the loop's clock, not workflow.now()")
            if not isinstance(node, ast.Call):
                continue
            func = self.qualified(node.func)
            if func == "builtins.getattr" and len(node.args) >= 2:
                self.check(self.qualified(node), node.lineno)
                # A literal name is the attribute it names, checked like one just above; a computed
                # one on a module or an imported class could be anything.
                # On a value (a model, `self`) it is ordinary field access: the guard does not
                # follow values, and `getattr(start, field_name)` reads no clock.
                target = self.qualified(node.args[0])
                literal = isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
                if target and not literal:
                    self.flag(node.lineno, f"getattr({target}, <computed>)")
            if func == "builtins.vars" and node.args and self.qualified(node.args[0]):
                self.flag(node.lineno, f"vars({self.qualified(node.args[0])})")

    def loopish(self, node: ast.AST) -> bool:
        if isinstance(node, ast.Call):  # asyncio.get_event_loop().time(), self._loop().time()
            node = node.func
        name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""
        return bool(LOOPISH.search(name))

    # --- iteration over sets -------------------------------------------------------------------

    def scope_of(self, node: ast.AST, chain: tuple[Scope, ...]) -> Scope:
        scope = Scope(node)
        arguments = node.args if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) else None
        if arguments:
            for arg in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs,
                        *filter(None, [arguments.vararg, arguments.kwarg])]:
                scope.bound.add(arg.arg)
                if set_annotation(arg.annotation) and not (arg is arguments.vararg or arg is arguments.kwarg):
                    scope.sets.add(arg.arg)
        nodes = list(own_nodes(node))
        scope.bound |= {n.id for n in nodes if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        chain = (*chain, scope)
        while True:  # to a fixed point: `b = a | c` after `a = set()`
            before = len(scope.sets)
            for n in nodes:
                if isinstance(n, ast.Assign):
                    if self.is_set(n.value, chain):
                        scope.sets |= {t.id for t in n.targets if isinstance(t, ast.Name)}
                elif isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name):
                    if set_annotation(n.annotation) or (n.value is not None and self.is_set(n.value, chain)):
                        scope.sets.add(n.target.id)
                elif isinstance(n, ast.NamedExpr) and self.is_set(n.value, chain):
                    scope.sets.add(n.target.id)
            if len(scope.sets) == before:
                return scope

    def lookup(self, name: str, chain: tuple[Scope, ...]) -> bool:
        for depth, scope in enumerate(reversed(chain)):
            if depth and isinstance(scope.node, ast.ClassDef):
                continue  # a class body's names are not visible in its methods
            if name in scope.bound:
                return name in scope.sets
        return self.qualified(ast.Name(id=name, ctx=ast.Load())) in self.known_sets

    def is_set(self, node: ast.AST, chain: tuple[Scope, ...]) -> bool:
        if isinstance(node, ast.Set | ast.SetComp):
            return True
        if isinstance(node, ast.Call):
            if self.qualified(node.func) in ("builtins.set", "builtins.frozenset"):
                return True
            return (isinstance(node.func, ast.Attribute) and node.func.attr in SET_METHODS
                    and self.is_set(node.func.value, chain))
        if isinstance(node, ast.BinOp) and isinstance(node.op, SET_OPERATORS):
            return self.is_set(node.left, chain) or self.is_set(node.right, chain)
        if isinstance(node, ast.IfExp):
            return self.is_set(node.body, chain) or self.is_set(node.orelse, chain)
        if isinstance(node, ast.Name):
            return self.lookup(node.id, chain)
        if isinstance(node, ast.Attribute):
            return self.qualified(node) in self.known_sets
        return False

    def read_iterations(self, node: ast.AST, chain: tuple[Scope, ...], orderless: set[int]) -> None:
        if isinstance(node, ast.Module) or isinstance(node, SCOPES):
            chain = (*chain, self.scope_of(node, chain))

        def refuse(iterated: ast.AST, line: int) -> None:
            if self.is_set(iterated, chain):
                self.flag(line, "iteration over a set: hash order, which differs between processes")

        if isinstance(node, ast.For | ast.AsyncFor):
            refuse(node.iter, node.lineno)
        elif isinstance(node, ast.ListComp | ast.GeneratorExp | ast.DictComp) and id(node) not in orderless:
            for generator in node.generators:
                refuse(generator.iter, node.lineno)
        elif isinstance(node, ast.Call):
            func = self.qualified(node.func)
            if func in KEYED and any(k.arg == "key" for k in node.keywords):
                for arg in node.args:
                    refuse(arg, node.lineno)
            elif func in ORDERLESS:
                orderless |= {id(arg) for arg in node.args}
            elif func in IN_ORDER or isinstance(node.func, ast.Attribute) and node.func.attr in IN_ORDER_METHODS:
                for arg in node.args:
                    refuse(arg, node.lineno)
        elif isinstance(node, ast.Starred):
            refuse(node.value, node.lineno)
        elif isinstance(node, ast.YieldFrom):
            refuse(node.value, node.lineno)
        for child in ast.iter_child_nodes(node):
            self.read_iterations(child, chain, orderless)

    def module_sets(self) -> set[str]:
        """This module's set constants, by the name another module imports them under."""
        self.read_imports()
        module = self.scope_of(self.tree, ())
        names = {f"{self.module}.{name}" for name in module.sets}
        for node in self.tree.body:
            if isinstance(node, ast.ClassDef):
                names |= {f"{self.module}.{node.name}.{name}" for name in self.scope_of(node, (module,)).sets}
        return names

    def uses(self) -> list[str]:
        self.read_imports()
        self.read_names()
        self.read_iterations(self.tree, (), set())
        return sorted(set(self.found))


def uses(source: str, module: str = "workflows.core.example", known_sets: frozenset[str] = frozenset()) -> list[str]:
    """Every forbidden use in the source of `module` (its dotted name resolves relative imports)."""
    return Guard(source, module, known_sets).uses()


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(WORKFLOWS.parent).with_suffix("").parts)


MODULES = sorted(WORKFLOWS.rglob("*.py"))
KNOWN_SETS = frozenset(name for path in MODULES
                       for name in Guard(path.read_text(), module_name(path), frozenset()).module_sets())


def test_every_journey_package_is_read():
    assert {p.parent.name for p in MODULES} >= {"core", "interview", "appointment", "lead", "session", "payment"}


def test_the_guard_reads_every_workflows_module_the_worker_loads():
    # An empty glob (a moved package, a wrong root) would parametrize the guard over nothing, and a
    # guard that reads nothing passes everything.
    import worker

    assert MODULES, f"no module under {WORKFLOWS}"
    loaded = {Path(m.__file__).resolve() for name, m in list(sys.modules.items())
              if (name == "workflows" or name.startswith("workflows.")) and getattr(m, "__file__", None)}
    assert loaded and loaded <= {p.resolve() for p in MODULES}, sorted(map(str, loaded - set(MODULES)))
    assert {Path(sys.modules[w.__module__].__file__).resolve() for w in worker.WORKFLOWS} <= loaded


def test_the_guard_knows_the_set_constants_of_the_workflows_package():
    assert "workflows.lead.models.LEAD_CLOSED" in KNOWN_SETS
    assert "workflows.contracts.DeliveryFailure.ALL" in KNOWN_SETS


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(WORKFLOWS)))
def test_workflow_code_uses_nothing_nondeterministic(path: Path):
    assert uses(path.read_text(), module_name(path), KNOWN_SETS) == []


@pytest.mark.parametrize("snippet, name", [
    ("from datetime import datetime\ndef f():\n    return datetime.now()\n", "datetime.datetime.now"),
    ("import datetime as dt\ndef f():\n    return dt.date.today()\n", "datetime.date.today"),
    ("import time\ndef f():\n    time.sleep(1)\n", "time.sleep"),
    ("import uuid\nKEY = uuid.uuid4()\n", "uuid.uuid4"),
    ("import random\n", "random"),
    ("import os\nURL = os.environ['X']\n", "os.environ"),
    ("def f():\n    return open('x').read()\n", "builtins.open"),
    ("from settings import Settings\n", "settings.Settings"),
])
def test_the_guard_catches_what_the_sandbox_would_have(snippet: str, name: str):
    assert any(name in use for use in uses(snippet))


def test_the_guard_lets_workflow_time_and_plain_datetime_math_through():
    source = ("from datetime import datetime, timedelta\nfrom temporalio import workflow\n"
              "def f(at: datetime):\n    return workflow.now() + timedelta(hours=1) > at.replace(microsecond=0)\n")
    assert uses(source) == []


# Each way around the guard, refused, beside the closest legitimate code, which passes: the
# refusal is of the dodge, not of everything that looks like it.
LEAD = "workflows.lead.rules"  # a module two levels down: `..` is `workflows`
RESEND = "workflows.resend"  # a module at the top: `..` is above `workflows`
DODGES = [
    # relative imports, resolved where the module is
    pytest.param(RESEND, "from ..activities import send\n", "from .core.send import send\n",
                 "activities.send", id="relative-activities"),
    pytest.param(LEAD, "from ...starter import cli\n", "from ..core import timing\n",
                 "starter.cli", id="relative-starter"),
    pytest.param(LEAD, "from ..activities import send\n", "from ..core import send\n",
                 "a workflows module named like an I/O module: workflows.activities.send", id="relative-named-like-io"),
    pytest.param(RESEND, "from .. import settings\n", "from . import contracts\n",
                 "relative import out of workflows: settings", id="relative-out-of-the-package"),
    pytest.param(LEAD, "from asyncpg import connect\n", "from workflows.contracts import SendRequest\n",
                 "asyncpg.connect", id="asyncpg"),
    pytest.param(LEAD, "import httpx\n", "from temporalio import workflow\n", "httpx", id="httpx"),
    pytest.param(LEAD, "from aiosmtplib import SMTP\n", "from email.message import EmailMessage\n",
                 "aiosmtplib.SMTP", id="aiosmtplib"),
    pytest.param(LEAD, "import socket\n", "import hashlib\n", "socket", id="socket"),
    pytest.param(LEAD, "import os.path\nP = os.path.join('a', 'b')\n", "import re\nP = re.escape('a/b')\n",
                 "os.path", id="os"),
    pytest.param(LEAD, "from subprocess import run\n", "from dataclasses import dataclass\n",
                 "subprocess.run", id="subprocess"),
    pytest.param(LEAD, "from activities.send import SendActivities\n",
                 "from workflows.contracts import SEND_MESSAGE\n", "activities.send", id="activities"),
    # dynamic imports and lookups
    pytest.param(LEAD, "import datetime\ndef f(name):\n    return getattr(datetime.datetime, name)()\n",
                 "import datetime\ndef f(start, name):\n    return getattr(start, name)\n",
                 "getattr(datetime.datetime, <computed>)", id="getattr-computed-on-a-module"),
    pytest.param(LEAD, "from datetime import datetime\ndef f():\n    return getattr(datetime, 'now')()\n",
                 "from datetime import datetime\ndef f():\n    return getattr(datetime, 'fromisoformat')('2025-01-01')\n",
                 "datetime.datetime.now", id="getattr-literal-denied"),
    pytest.param(LEAD, "import datetime\nNOW = getattr(getattr(datetime, 'datetime'), 'now')\n",
                 "import datetime\nISO = getattr(getattr(datetime, 'datetime'), 'fromisoformat')\n",
                 "datetime.datetime.now", id="getattr-nested"),
    pytest.param(LEAD, "def f():\n    return __import__('time').time()\n", "def f(t):\n    return t.time()\n",
                 "builtins.__import__", id="dunder-import"),
    pytest.param(LEAD, "import importlib\nT = importlib.import_module('time')\n",
                 "import functools\nT = functools.partial(int, base=2)\n", "importlib", id="importlib"),
    pytest.param(LEAD, "from importlib import import_module\n", "from functools import partial\n",
                 "importlib.import_module", id="importlib-from"),
    pytest.param(LEAD, "import builtins\nI = builtins.__import__\n", "import builtins\nL = builtins.len\n",
                 "builtins.__import__", id="builtins-module"),
    pytest.param(LEAD, "import sys\nT = sys.modules['time']\n", "import sys\nM = sys.maxsize\n",
                 "sys.modules", id="sys-modules"),
    pytest.param(LEAD, "import datetime\nD = vars(datetime.datetime)['now']\n", "D = vars(object())\n",
                 "vars(datetime.datetime)", id="vars-of-a-module"),
    pytest.param(LEAD, "import datetime\nD = datetime.datetime.__dict__['now']\n",
                 "def f(model):\n    return model.__dict__\n", "datetime.datetime.__dict__", id="dunder-dict"),
    pytest.param(LEAD, "def f():\n    return eval('1')\n", "import ast\ndef f():\n    return ast.literal_eval('1')\n",
                 "builtins.eval", id="eval"),
    # the event loop's clock
    pytest.param(LEAD, "import asyncio\ndef f():\n    return asyncio.get_event_loop().time()\n",
                 "import asyncio\nasync def f():\n    await asyncio.sleep(1)\n",
                 "asyncio.get_event_loop", id="get-event-loop"),
    pytest.param(LEAD, "import asyncio\ndef f():\n    return asyncio.get_running_loop()\n",
                 "import asyncio\ndef f():\n    return asyncio.Lock()\n", "asyncio.get_running_loop",
                 id="get-running-loop"),
    pytest.param(LEAD, "def f(loop):\n    return loop.time()\n",
                 "from temporalio import workflow\ndef f(loop):\n    return workflow.now(), loop.run_plan\n",
                 "loop.time()", id="loop-time"),
    pytest.param(LEAD, "class J:\n    def f(self):\n        return self._loop.time()\n",
                 "class J:\n    def f(self):\n        return self.stamp.time()\n",
                 "loop.time()", id="self-loop-time"),
    # iteration over sets
    pytest.param(LEAD, "def f(send):\n    for c in {'email', 'webhook'}:\n        send(c)\n",
                 "def f(send):\n    for c in ('email', 'webhook'):\n        send(c)\n",
                 "iteration over a set", id="for-over-a-set-display"),
    pytest.param(LEAD, "def f(xs, send):\n    for c in {x.kind for x in xs}:\n        send(c)\n",
                 "def f(xs, send):\n    for c in sorted({x.kind for x in xs}):\n        send(c)\n",
                 "iteration over a set", id="for-over-a-set-comprehension"),
    pytest.param(LEAD, "def f(xs, send):\n    for c in set(xs):\n        send(c)\n",
                 "def f(xs, send):\n    for c in dict.fromkeys(xs):\n        send(c)\n",
                 "iteration over a set", id="for-over-set-call"),
    pytest.param(LEAD, "def f(xs, send):\n    seen = frozenset(xs) - {'x'}\n    return [send(c) for c in seen]\n",
                 "def f(xs, send):\n    seen = frozenset(xs) - {'x'}\n    return [send(c) for c in xs if c in seen]\n",
                 "iteration over a set", id="comprehension-over-a-name-bound-to-a-set"),
    pytest.param(LEAD, "def f(ids: set[str]):\n    return ','.join(ids)\n",
                 "def f(ids: set[str]):\n    return ','.join(sorted(ids))\n",
                 "iteration over a set", id="join-of-an-annotated-set"),
    pytest.param(LEAD, "import asyncio\nasync def f(send, xs):\n    await asyncio.gather(*(send(x) for x in set(xs)))\n",
                 "import asyncio\nasync def f(send, xs):\n    await asyncio.gather(*(send(x) for x in xs))\n",
                 "iteration over a set", id="generator-over-a-set-call"),
    pytest.param(LEAD, "def f(xs):\n    return list(set(xs))\n", "def f(xs):\n    return len(set(xs)) == len(xs)\n",
                 "iteration over a set", id="list-of-a-set"),
    pytest.param(LEAD, "CLOSED = frozenset({'a', 'b'})\ndef f(send):\n    for s in CLOSED:\n        send(s)\n",
                 "CLOSED = frozenset({'a', 'b'})\ndef f(status):\n    return status in CLOSED\n",
                 "iteration over a set", id="module-set-constant"),
    pytest.param(LEAD, "from workflows.lead.models import LEAD_CLOSED\ndef f(send):\n    for s in LEAD_CLOSED:\n"
                 "        send(s)\n",
                 "from workflows.lead.models import LEAD_CLOSED\ndef f(status):\n    return status in LEAD_CLOSED\n",
                 "iteration over a set", id="imported-set-constant"),
    pytest.param(LEAD, "def f(xs):\n    return sorted(set(xs), key=len)\n",
                 "def f(xs):\n    return sorted(set(xs)), min(set(xs)), any(x.startswith('a') for x in set(xs))\n",
                 "iteration over a set", id="sorted-with-key-keeps-ties-in-set-order"),
    pytest.param(LEAD, "def f(xs):\n    CLOSED = {'a'}\n    def g():\n        return [x for x in CLOSED]\n    return g\n",
                 "CLOSED = {'a'}\ndef f(CLOSED):\n    return [x for x in CLOSED]\n",
                 "iteration over a set", id="enclosing-function-binding-and-shadowing"),
]


@pytest.mark.parametrize("module, refused, allowed, name", DODGES)
def test_the_guard_refuses_each_dodge_and_lets_its_legitimate_twin_through(module, refused, allowed, name):
    assert any(name in use for use in uses(refused, module, KNOWN_SETS)), uses(refused, module, KNOWN_SETS)
    assert uses(allowed, module, KNOWN_SETS) == []
