"""Schemathesis, driven by our own OpenAPI document, against the real stack (API, worker, Temporal
dev server, PostgreSQL, SMTP sink): every operation, every check (`schemathesis.toml` lists the
ones we judge false positives, with why). It fails on any server error, response that breaks its
schema, or status the document does not declare.

`make test` runs a bounded pass: a fixed seed, FOLLOWUPS_FUZZ_EXAMPLES cases per operation
(default 8). `make fuzz` runs the same with many more.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

SEED = 20261203


async def test_schemathesis_finds_no_server_error_schema_violation_or_undeclared_status(stack, tmp_path: Path):
    examples = int(os.environ.get("FOLLOWUPS_FUZZ_EXAMPLES", "8"))
    report = tmp_path / "junit.xml"
    command = [
        str(Path(sys.executable).parent / "st"), "--config-file", str(ROOT / "schemathesis.toml"), "--no-color",
        "run", f"{stack.base_url}/openapi.json",
        "--header", f"Authorization: Bearer {stack.settings.api_keys[0]}",
        "--seed", str(SEED), "--max-examples", str(examples), "--workers", "1",
        "--report", "junit", "--report-dir", str(tmp_path),
        # a 3 MB body to a loaded machine (make test runs three processes) once took longer than the
        # default; a timeout here would say nothing about the API
        "--request-timeout", "60",
    ]
    done = await asyncio.to_thread(subprocess.run, command, cwd=ROOT, capture_output=True, text=True,
                                   timeout=int(os.environ.get("FOLLOWUPS_FUZZ_TIMEOUT", "600")))
    # a generated body of megabytes of one character would hide the failure's name and check
    out = re.sub(r"(.{1,12}?)\1{20,}", lambda m: f"{m.group(1)}…(×{len(m.group(0)) // len(m.group(1))})", done.stdout)
    print(out[-6000:])
    assert done.returncode == 0, out[-20000:] + done.stderr[-4000:]
    assert report.exists() or any(tmp_path.iterdir())
