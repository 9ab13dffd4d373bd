"""`followups dev` (what `make dev` runs) as a user runs it: start, use, Ctrl-C, start again.

Ports and the data dir come from the settings, so this runs beside anything else on the machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from starter.sink import free_port

FOLLOWUPS = str(Path(sys.executable).parent / "followups")


def start_dev(data_dir: Path, ports: dict[str, int], log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOLLOWUPS_") and k != "DATABASE_URL"}
    env.update({
        "FOLLOWUPS_DATA_DIR": str(data_dir),
        "FOLLOWUPS_API_PORT": str(ports["api"]),
        "FOLLOWUPS_TEMPORAL_ADDRESS": f"localhost:{ports['temporal']}",
        "FOLLOWUPS_TEMPORAL_UI_PORT": str(ports["ui"]),
        "FOLLOWUPS_SMTP_PORT": str(ports["smtp"]),
    })
    return subprocess.Popen([FOLLOWUPS, "dev"], env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    return proc.wait(timeout=60)


def test_dev_starts_prints_urls_survives_ctrl_c_and_resumes(tmp_path: Path):
    ports = {name: free_port() for name in ("api", "temporal", "ui", "smtp")}
    data, log = tmp_path / "data", tmp_path / "dev.log"
    base = f"http://127.0.0.1:{ports['api']}"
    auth = {"Authorization": "Bearer dev-key"}
    proc = start_dev(data, ports, log)
    try:
        wait_until(lambda: "Try a demo interview" in log.read_text(errors="replace"), 120, "the banner")
        banner = log.read_text(errors="replace")
        for expected in (f"http://localhost:{ports['ui']}", f"{base}/docs", "dev-key", "curl -s"):
            assert expected in banner
        assert httpx.get(f"http://localhost:{ports['ui']}", timeout=5).status_code == 200  # the Web UI is up
        body = {
            "interview_id": "dev-1",
            "candidate": {"email": "ada@example.com", "name": "Ada"},
            "slot_selection_url": "https://jobs.example.com/slots/dev-1",
            "policy": {"followup_after": "PT1S", "followup_interval": "PT20S", "max_followups": 2},
        }
        assert httpx.post(f"{base}/v1/interviews", json=body, headers=auth, timeout=30).status_code == 201
        outbox = data / "outbox"
        wait_until(lambda: list(outbox.glob("*followup-1.eml")), 30, "follow-up 1 in the outbox")
        assert "interview-dev-1/followup-1" in log.read_text(errors="replace")  # one line per message
    finally:
        assert stop(proc) == 0

    # Again, on the same data: the sleeping journey is still there and its next follow-up fires.
    proc = start_dev(data, ports, log)
    try:
        state = wait_until(
            lambda: httpx.get(f"{base}/v1/interviews/dev-1", headers=auth, timeout=10).json().get("state"),
            120, "the journey after the restart",
        )
        assert state["status"] == "pending" and state["followups_sent"] == 1
        wait_until(lambda: list((data / "outbox").glob("*followup-2.eml")), 60, "follow-up 2 after the restart")
    finally:
        assert stop(proc) == 0
