"""`make bench` / `make bench-quick`: every benchmark, one after the other, each printing its table
side by side with the peers and writing bench/results/*.json.

    .venv/bin/python -m bench.run [--quick] [--only lateness,crash,throughput,memory,render]

A benchmark that fails stops the run with its exit code: a number that could not be measured is
never reported as if it had been.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

# name → (module, arguments for `make bench`, arguments for `make bench-quick`). The full run is
# sized to finish in about a quarter of an hour on 2 cores: 10,000 reminders and a 10,000-lead
# import as the issue asks; the crash run and the memory stages smaller.
BENCHES = {
    "render": ("bench.render", [], ["--quick"]),
    "throughput": ("bench.throughput", ["--rows", "10000", "--emails", "3000", "--variants", "bare,http"],
                   ["--quick"]),
    "memory": ("bench.memory", ["--journeys", "1000,5000"], ["--quick"]),
    "lateness": ("bench.lateness", [], ["--quick"]),
    "crash": ("bench.lateness", ["--crash", "--n", "2000", "--spread", "30"],
              ["--crash", "--n", "300", "--spread", "10"]),
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
