"""`make bench` / `make bench-quick`: every benchmark, one after the other, each printing its table
side by side with the peers and writing bench/results/*.json.

    .venv/bin/python -m bench.run [--quick] [--only lateness,rate,crash,throughput,memory,render,events,import_health,lms]

A benchmark that fails stops the run with its exit code: a number that could not be measured is
never reported as if it had been.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

# name → (module, arguments for `make bench`, arguments for `make bench-quick`). `make bench` is
# sized to finish inside 15 minutes on 2 cores: the 10,000-lead import and 3,000 emails as the issue
# asks; lateness at 3,000 reminders over 60 s (50/s, with all five systems running at once;
# `python -m bench.lateness` alone runs the 10,000, which overloads every system here);
# memory at 1,000 and 5,000 journeys (`python -m bench.memory --journeys 1000,10000,100000` for
# more: ~44 journeys/s are started and first-run here, so 100,000 take over half an hour); the
# sustainable rate of Followups and of bare Temporal, stepped alternately (a 15-minute budget).
# `make bench-quick`: the same at 50/s over 10 s, polling every 20 s; the rate in 10 s steps
# within 5 minutes.
BENCHES = {
    "render": ("bench.render", [], ["--quick"]),
    "events": ("bench.events", [], ["--quick"]),  # 200 confirms per variant; --quick 50 (under a minute)
    "import_health": ("bench.import_health", [], ["--quick"]),  # 400,000 bad rows (~1 min); --quick 40,000
    "lms": ("bench.lms", [], ["--quick"]),  # a 10,000-recipient announcement; declared starts (~2 min)
    # a 100,000-recipient campaign unthrottled, 5 min of the rate over 3 workers, reminders beside a
    # throttled campaign (~30 min here); --quick: 10,000, 2 min, 30 reminders (~7 min)
    "campaigns": ("bench.campaigns", [], ["--quick"]),
    # 20,000 event webhooks against a bare httpx loop; 300 reminders with no endpoint, a dead one and a
    # refused one, alternating (11 min here under load); --quick: 3,000 events, 100 reminders, 3 phases (~2 min)
    "webhooks": ("bench.webhooks", [], ["--quick"]),
    "throughput": ("bench.throughput", ["--rows", "10000", "--emails", "3000", "--variants", "bare,http"],
                   ["--quick"]),
    "memory": ("bench.memory", ["--journeys", "1000,5000"], ["--quick"]),
    "lateness": ("bench.lateness", ["--n", "3000", "--spread", "60"], ["--quick"]),
    "rate": ("bench.lateness", ["--find-rate", "--systems", "followups,bare-temporal"],
             ["--find-rate", "--quick", "--systems", "followups,bare-temporal"]),
    "crash": ("bench.lateness", ["--crash", "--n", "2000", "--spread", "30"],
              ["--crash", "--quick", "--n", "300", "--spread", "10"]),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: the whole run in a few minutes")
    parser.add_argument("--only", default=",".join(BENCHES), help="comma-separated subset of " + ",".join(BENCHES))
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(BENCHES))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    started = time.monotonic()
    for name in chosen:
        module, full, quick = BENCHES[name]
        command = [sys.executable, "-m", module, *(quick if args.quick else full)]
        print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
        began = time.monotonic()
        code = subprocess.call(command)
        print(f"=== {name}: {'done' if code == 0 else f'FAILED (exit {code})'} in {time.monotonic() - began:.0f} s",
              flush=True)
        if code != 0:
            return code
    print(f"\nall benchmarks done in {time.monotonic() - started:.0f} s; figures in bench/results/*.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
