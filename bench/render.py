"""How long does rendering one message take? activities.render.Renderer against what seeds do.

    .venv/bin/python -m bench.render [--quick] [--n 2000]

For every template pair in templates/ (NAME.txt + NAME.html, base layouts excluded), with the
context its journey passes (workflows/*.py `context=`) plus what the send step adds
(templates/catalog.yaml: each template's sample and the send step's own variables):

- followups: the project's Renderer (sandboxed, StrictUndefined, templates compiled once and
  cached, HTML CSS-inlined): subject from the .txt module, the .txt body, the .html page — what
  the send step calls for a file template;
- saved version: the same template as a version saved in PostgreSQL, rendered in the render
  sandbox's child process (what the send step calls for a published version);
- naive, new env per render: a plain jinja2.Environment(FileSystemLoader, autoescape) created for
  every message, as seed scripts do (so every template is parsed and compiled every time);
- naive, env reused: the same plain environment created once (isolates the sandbox's cost).

Each column: warm-up, then N timed renders (naive-per-render: N/10, it is slow), p50 / p99 in ms.
Goal: followups p50 ≤ 0.5 ms (the seed claims ~10 ms). Writes bench/results/render.json.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from activities.render import FILTERS, Renderer, Source, TEMPLATES_DIR
from activities.template_store import load_catalog
from bench.common import load, machine_facts, now_iso, say, table, write_results

GOAL_P50_MS = 0.5

SOON = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=3)


def contexts() -> dict[str, dict[str, Any]]:
    """A realistic context per template: its sample in templates/catalog.yaml (the keys its journey
    sends) plus what the send step adds (recipient_name, unsubscribe_url, preferences_url, …)."""
    catalog = load_catalog()
    return {name: {**catalog.send_step, **entry.sample} for name, entry in catalog.templates.items()}


def saved_version(name: str) -> Source:
    """The file template as a version saved in PostgreSQL would hold it: the same text and HTML
    (extending the same layouts), the subject it renders to."""
    text = (TEMPLATES_DIR / f"{name}.txt").read_text()
    html = (TEMPLATES_DIR / f"{name}.html").read_text()
    return Source(subject="{{ recipient_name }}: " + name.replace("_", " "), text=text, html=html)


def template_names() -> list[str]:
    names = sorted(p.stem for p in TEMPLATES_DIR.glob("*.txt") if p.stem != "base")
    return [name for name in names if (TEMPLATES_DIR / f"{name}.html").exists()]


def naive_environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=select_autoescape(["html"]))
    env.filters.update(FILTERS)
    return env


def naive_render(env: Environment, name: str, context: dict[str, Any]) -> tuple[str, str, str]:
    text_module = env.get_template(f"{name}.txt").make_module(context)
    subject = " ".join(str(getattr(text_module, "subject", "")).split())
    html = env.get_template(f"{name}.html").render({**context, "subject": subject})
    return subject, str(text_module), html


def timed(fn: Callable[[], object], n: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(n):
        start = clock()
        fn()
        samples.append((clock() - start) / 1e6)
    return samples


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(samples: list[float]) -> dict[str, float]:
    return {"n": len(samples), "p50_ms": round(statistics.median(samples), 4), "p99_ms": round(pct(samples, 0.99), 4),
            "mean_ms": round(statistics.fmean(samples), 4), "max_ms": round(max(samples), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="300 renders per template (else 2,000)")
    parser.add_argument("--n", type=int, default=None, help="timed renders per template and column")
    args = parser.parse_args()
    n = args.n or (300 if args.quick else 2000)
    n_fresh = max(20, n // 10)
    warmup = max(20, n // 20)
    load_before = load()
    say(f"render: {n} renders per template (naive per-render env: {n_fresh}), warm-up {warmup}")

    renderer = Renderer()
    reused = naive_environment()
    results: dict[str, Any] = {}
    for name, context in ((name, contexts()[name]) for name in template_names()):
        rendered = renderer.render(name, context)  # fails loudly if the context is not what the template needs
        assert rendered.subject and rendered.html and rendered.text
        results[name] = {
            "subject": rendered.subject,
            "bytes": {"text": len(rendered.text.encode()), "html": len(rendered.html.encode())},
            "followups": summary(timed(lambda: renderer.render(name, context), n, warmup)),
            # a version saved in PostgreSQL: rendered in the sandbox's child process, CSS-inlined
            "saved": summary(timed(lambda: renderer.render(name, context, source=saved_version(name)), n, warmup)),
            "naive_env_reused": summary(timed(lambda: naive_render(reused, name, context), n, warmup)),
            "naive_env_per_render": summary(timed(lambda: naive_render(naive_environment(), name, context),
                                                  n_fresh, 3)),
        }
        gc.collect()
    renderer.close()
    every = [r["followups"]["p50_ms"] for r in results.values()]
    verdict = {"goal_p50_ms": GOAL_P50_MS, "worst_template_p50_ms": max(every),
               "met": max(every) <= GOAL_P50_MS}
    rows = []
    for name, r in results.items():
        f, saved, reused_s, fresh = r["followups"], r["saved"], r["naive_env_reused"], r["naive_env_per_render"]
        rows.append([name, f"{f['p50_ms']:.3f}", f"{f['p99_ms']:.3f}", f"{saved['p50_ms']:.3f}", f"{saved['p99_ms']:.3f}",
                     f"{reused_s['p50_ms']:.3f}",
                     f"{reused_s['p99_ms']:.3f}", f"{fresh['p50_ms']:.2f}", f"{fresh['p99_ms']:.2f}",
                     f"{fresh['p50_ms'] / f['p50_ms']:.0f}×"])
    load_after = load()
    table("Render one message (subject + text + HTML), ms",
          ["template", "followups p50", "p99", "saved version p50", "p99", "naive reused p50", "p99",
           "naive per-render p50", "p99",
           "per-render / followups"], rows,
          caption=(f"followups = activities.render.Renderer (sandboxed, strict, cached, CSS-inlined), n={n} after "
                   f"{warmup} warm-up; saved version = the same template saved in PostgreSQL, rendered in the "
                   f"render sandbox's child process (time and memory limits); "
                   f"naive per-render n={n_fresh}. Goal p50 ≤ {GOAL_P50_MS} ms: "
                   f"{'met' if verdict['met'] else 'NOT met'} (worst p50 {verdict['worst_template_p50_ms']:.3f} ms). "
                   f"Load before: {load_before['loadavg_1m']} (1-min avg, {load_before['cpu_busy_percent_1s']}% busy)."))
    path = write_results("render", {
        "benchmark": "render", "mode": "quick" if args.quick else "full", "when": now_iso(),
        "params": {"n": n, "n_naive_per_render": n_fresh, "warmup": warmup, "templates_dir": str(TEMPLATES_DIR)},
        "machine": machine_facts(), "load": {"before": load_before, "after": load_after},
        "verdict": verdict, "templates": results,
    })
    say(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
