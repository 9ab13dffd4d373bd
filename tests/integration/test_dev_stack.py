"""`followups dev` (what `make dev` runs) as a user runs it: start, use, Ctrl-C, start again; with
worker processes, one of them killed; with none, and a worker attached by the banner's command.

Ports and the data dir come from the settings, so this runs beside anything else on the machine.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from starter.sink import free_port

FOLLOWUPS = str(Path(sys.executable).parent / "followups")


def user_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("FOLLOWUPS_") and k != "DATABASE_URL"}


def start_dev(data_dir: Path, ports: dict[str, int], log: Path, *options: str) -> subprocess.Popen:
    env = user_env()
    env.update({
        "FOLLOWUPS_DATA_DIR": str(data_dir),
        "FOLLOWUPS_API_PORT": str(ports["api"]),
        "FOLLOWUPS_TEMPORAL_ADDRESS": f"localhost:{ports['temporal']}",
        "FOLLOWUPS_TEMPORAL_UI_PORT": str(ports["ui"]),
        "FOLLOWUPS_SMTP_PORT": str(ports["smtp"]),
    })
    return subprocess.Popen([FOLLOWUPS, "dev", *options], env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


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


def stop(proc: subprocess.Popen, signum: int = signal.SIGINT) -> int:  # Ctrl-C
    proc.send_signal(signum)
    return proc.wait(timeout=60)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def start_interview(base: str, interview_id: str, email: str = "ada@example.com") -> None:
    body = {
        "interview_id": interview_id,
        "candidate": {"email": email, "name": "Ada"},
        "slot_selection_url": f"https://jobs.example.com/slots/{interview_id}",
        "policy": {"followup_after": "PT1S", "followup_interval": "PT20S", "max_followups": 2},
    }
    response = httpx.post(f"{base}/v1/interviews", json=body, headers={"Authorization": "Bearer dev-key"}, timeout=30)
    # 202: started, but no worker answered within its wait (one just killed or not connected yet)
    assert response.status_code in (201, 202), response.text


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
            # follow-up 2 40 s after the first: the rest of this run and the stop fit in between
            "policy": {"followup_after": "PT1S", "followup_interval": "PT40S", "max_followups": 2},
        }
        assert httpx.post(f"{base}/v1/interviews", json=body, headers=auth, timeout=30).status_code == 201
        outbox = data / "outbox"
        wait_until(lambda: list(outbox.glob("*dev-1__followup-1.eml")), 30, "follow-up 1 in the outbox")
        assert "interview-dev-1/followup-1" in log.read_text(errors="replace")  # one line per message
        # A special-use .test address: refused in production, accepted by the API and the worker here.
        start_interview(base, "dev-2", email="pat@example.test")
        wait_until(lambda: list(outbox.glob("*dev-2__followup-1.eml")), 30, "follow-up 1 to pat@example.test")
    finally:
        assert stop(proc) == 0
    # stopped while the journey slept: follow-up 2 (40 s after the first) had not gone out
    assert not list(outbox.glob("*dev-1__followup-2.eml")), "follow-up 2 went out before the stop"

    # Again, on the same data: the sleeping journey is still there and its next follow-up fires.
    # (Read once it has: the restart may take longer than the 40 s, and that changes nothing here.)
    proc = start_dev(data, ports, log)
    try:
        wait_until(lambda: list(outbox.glob("*dev-1__followup-2.eml")), 120, "follow-up 2 after the restart")
        # The sink writes the file before the send step returns, so the journey counts it a moment later.
        def counted() -> dict | None:
            state = httpx.get(f"{base}/v1/interviews/dev-1", headers=auth, timeout=10).json().get("state")
            return state if state and state["followups_sent"] == 2 else None

        state = wait_until(counted, 60, "the journey to count follow-up 2 after the restart")
        assert state["status"] == "pending"
    finally:
        assert stop(proc) == 0


def banner_of(log: Path) -> str:
    def banner() -> str:
        text = log.read_text(errors="replace")
        return text if "Try a demo interview" in text else ""

    return wait_until(banner, 120, "the banner")


def test_dev_with_worker_processes_carries_on_when_one_is_killed(tmp_path: Path):
    ports = {name: free_port() for name in ("api", "temporal", "ui", "smtp")}
    data, log = tmp_path / "data", tmp_path / "dev.log"
    base, outbox = f"http://127.0.0.1:{ports['api']}", data / "outbox"
    proc = start_dev(data, ports, log, "--workers", "2")
    try:
        banner = banner_of(log)
        assert "Worker           in this process" not in banner
        pids = [int(pid) for pid in re.findall(r"^  Worker \d +pid (\d+)", banner, re.MULTILINE)]
        assert len(pids) == 2 and all(alive(pid) for pid in pids) and os.getpid() not in pids
        start_interview(base, "w-1")
        wait_until(lambda: list(outbox.glob("*w-1__followup-1.eml")), 30, "a journey on two worker processes")

        os.kill(pids[0], signal.SIGKILL)
        wait_until(lambda: f"worker 1 (pid {pids[0]}) exited (killed by SIGKILL); 1 of 2 workers left"
                   in log.read_text(errors="replace"), 30, "the killed worker reported")
        start_interview(base, "w-2")
        wait_until(lambda: list(outbox.glob("*w-2__followup-1.eml")), 60, "a journey after a worker was killed")
    finally:
        assert stop(proc, signal.SIGTERM) == 0
    assert not alive(pids[1]), "the worker outlived the stack"


def test_dev_without_a_worker_takes_one_attached_by_the_banners_command(tmp_path: Path):
    ports = {name: free_port() for name in ("api", "temporal", "ui", "smtp")}
    data, log = tmp_path / "data", tmp_path / "dev.log"
    base, outbox = f"http://127.0.0.1:{ports['api']}", data / "outbox"
    proc = start_dev(data, ports, log, "--no-worker")
    attached = None
    try:
        banner = banner_of(log)
        assert "Workers          none" in banner
        command = banner.split("Attach another worker to this stack")[1].splitlines()[1]
        # From a shell that knows nothing of the stack: the command carries everything.
        attached = subprocess.Popen(["sh", "-c", command], env=user_env(), stdout=log.open("ab"),
                                    stderr=subprocess.STDOUT, start_new_session=True)
        start_interview(base, "a-1")
        wait_until(lambda: list(outbox.glob("*a-1__followup-1.eml")), 60, "the attached worker's first send")
    finally:
        if attached is not None:
            os.killpg(attached.pid, signal.SIGINT)
            attached.wait(timeout=30)
        assert stop(proc) == 0


# Not the dev stack, but the same kind of test: a CLI command run as a user runs it.
def test_preview_prints_its_table_without_the_heartbeat_capability_warning():
    result = subprocess.run([FOLLOWUPS, "preview", "lead"], env=user_env(), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "would send" in result.stdout
    assert "activity_failure_include_heartbeat" not in result.stdout + result.stderr
