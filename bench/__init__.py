"""Benchmarks: Followups against named peers (lateness.py) and against the bare libraries it uses
(throughput.py, memory.py, render.py). Results in bench/results/*.json."""
