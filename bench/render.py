"""How long does rendering one message take? activities.render.Renderer against what seeds do.

    .venv/bin/python -m bench.render [--quick] [--n 2000]

For every template pair in templates/ (NAME.txt + NAME.html, base layouts excluded), with the
context its journey passes (workflows/*.py `context=`) plus what the send step adds
(activities/send.py: recipient_name, time_zone, sender_name, postal_address, unsubscribe_url):

- followups: the project's Renderer (sandboxed, StrictUndefined, templates compiled once and
  cached): subject from the .txt module, the .txt body, the .html page — what the send step calls;
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

from activities.render import FILTERS, Renderer, TEMPLATES_DIR
from activities.send import Sender
from bench.common import load, machine_facts, now_iso, say, table, write_results

GOAL_P50_MS = 0.5

SENDER = Sender("followups@example.com", "Followups", "Followups, 1 Example Street, 10115 Berlin, Germany",
                "https://followups.example.com", "bench-secret")
SOON = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=3)


def send_step_context(recipient_name: str, email: str, key: str, time_zone: str | None) -> dict[str, Any]:
    """What activities/send.py adds to every journey's context before rendering."""
    return {"recipient_name": recipient_name, "time_zone": time_zone, "sender_name": SENDER.name,
            "postal_address": SENDER.postal_address, "unsubscribe_url": SENDER.unsubscribe_url(email, key)}


def contexts() -> dict[str, dict[str, Any]]:
    """A realistic context per template: the keys its workflow sends (see workflows/*/workflow.py)."""
    interview = {  # workflows/interview/workflow.py
        "candidate_name": "Ada Lovelace", "slot_selection_url": "https://jobs.example.com/slots/42",
        "followup_number": 3, "max_followups": 3, "scheduled_at": None, "time_zone": "Europe/London",
    }
    appointment = {  # workflows/appointment/workflow.py
        "patient_name": "Grace Hopper", "doctor": "Dr Jane Smith", "clinic": "Riverside Clinic",
        "location": "12 River Road, 2nd floor", "scheduled_at": SOON.isoformat(), "time_zone": "America/New_York",
    }
    lead = {  # workflows/lead/workflow.py
        "name": "Alan Turing", "company": "Bletchley Analytics", "offer_url": "https://shop.example.com/offer/spring",
        "campaign": "spring-2026", "step": 1, "steps": 3,
    }
    session = {  # workflows/session/workflow.py
        "name": "Katherine Johnson", "title": "Orbital Mechanics 101", "tutor_name": "Dorothy Vaughan",
        "starts_at": SOON.isoformat(), "ends_at": (SOON + timedelta(hours=1)).isoformat(),
        "join_url": "https://class.example.com/join/om101", "feedback_url": "https://class.example.com/feedback/om101",
        "recording_url": "https://class.example.com/rec/om101", "checkin_comment": None, "session_id": "om101-7",
    }
    payment = {  # workflows/payment/workflow.py
        "payer_name": "Hedy Lamarr", "amount": "1234.50", "currency": "EUR", "locale": "de_DE",
        "payment_url": "https://pay.example.com/inv-7", "description": "Spring course, instalment 2",
        "reminder_number": 1, "started_at": SOON.isoformat(), "paid_at": None, "paid_reference": None,
        "time_zone": "Europe/Vienna",
    }
    out = {
        "interview_followup": ({**interview}, "Ada Lovelace", "interview-42/followup-3"),
        "interview_reminder": ({**interview, "scheduled_at": SOON.isoformat()}, "Ada Lovelace", "interview-42/reminder"),
        "appointment_reminder": (appointment, "Grace Hopper", "appointment-7/reminder-1h"),
        "appointment_cancelled": (appointment, "Grace Hopper", "appointment-7/cancelled"),
        "lead_welcome": (lead, "Alan Turing", "lead-9/step-1"),
        "lead_still_interested": ({**lead, "step": 2}, "Alan Turing", "lead-9/step-2"),
        "lead_final_offer": ({**lead, "step": 3}, "Alan Turing", "lead-9/step-3"),
        "session_reminder": (session, "Katherine Johnson", "session-om101-7/reminder-24h/a1"),
        "session_cancelled": (session, "Katherine Johnson", "session-om101-7/cancelled/a1"),
        "session_feedback": (session, "Katherine Johnson", "session-om101-7/feedback/a1"),
        "session_recording": (session, "Katherine Johnson", "session-om101-7/recording/a1"),
        "session_checkin": ({**session, "name": "Dorothy Vaughan"}, "Dorothy Vaughan", "session-om101-7/checkin"),
        "session_escalation": ({**session, "name": "Mary Jackson",
                                "checkin_comment": "The projector failed & half the class could not see the slides."},
                               "Mary Jackson", "session-om101-7/escalation"),
        "payment_reminder": (payment, "Hedy Lamarr", "payment-inv-7/reminder-3d"),
        "payment_confirmation": ({**payment, "paid_at": SOON.isoformat(), "paid_reference": "ch_3N2"},
                                 "Hedy Lamarr", "payment-inv-7/confirmation"),
    }
    return {name: {**ctx, **send_step_context(who, "someone@example.com", key, ctx.get("time_zone"))}
            for name, (ctx, who, key) in out.items()}


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
            "naive_env_reused": summary(timed(lambda: naive_render(reused, name, context), n, warmup)),
            "naive_env_per_render": summary(timed(lambda: naive_render(naive_environment(), name, context),
                                                  n_fresh, 3)),
        }
        gc.collect()
    every = [r["followups"]["p50_ms"] for r in results.values()]
    verdict = {"goal_p50_ms": GOAL_P50_MS, "worst_template_p50_ms": max(every),
               "met": max(every) <= GOAL_P50_MS}
    rows = []
    for name, r in results.items():
        f, reused_s, fresh = r["followups"], r["naive_env_reused"], r["naive_env_per_render"]
        rows.append([name, f"{f['p50_ms']:.3f}", f"{f['p99_ms']:.3f}", f"{reused_s['p50_ms']:.3f}",
                     f"{reused_s['p99_ms']:.3f}", f"{fresh['p50_ms']:.2f}", f"{fresh['p99_ms']:.2f}",
                     f"{fresh['p50_ms'] / f['p50_ms']:.0f}×"])
    load_after = load()
    table("Render one message (subject + text + HTML), ms",
          ["template", "followups p50", "p99", "naive reused p50", "p99", "naive per-render p50", "p99",
           "per-render / followups"], rows,
          caption=(f"followups = activities.render.Renderer (sandboxed, strict, cached), n={n} after {warmup} warm-up; "
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
