"""The pure parts of templates in the database: which A/B arm a recipient gets, the catalog of file
templates, CSS inlining, and the renderer's limits on a saved version (the child process that
refuses a template which loops or allocates without end, and is replaced; a render stopped from
outside is a RenderTimeout, retried, not a TemplateProblem; the child holds none of our secrets)."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from activities.render import TEMPLATES_DIR, Renderer, RenderTimeout, Source, TemplateProblem
from activities.render_sandbox import ENVIRONMENT_NAMES, child_environment
from activities.template_checks import SEND_STEP_VARIABLES, check
from activities.template_store import SEEDED_CATEGORIES, Variant, load_catalog, pick_variant

CATALOG = load_catalog()
ARMS = (Variant("a", 1, {"subject": "A"}), Variant("b", 3, {"subject": "B"}))


@pytest.fixture(scope="module")
def renderer():
    """One renderer (one child process) for the module's saved-source renders."""
    made = Renderer()
    yield made
    made.close()


# --- variants ------------------------------------------------------------------------------------

@given(recipient=st.emails(), version=st.integers(1, 10_000))
@settings(max_examples=200)
def test_a_recipient_always_gets_the_same_arm_whatever_the_case_of_the_address(recipient: str, version: int):
    first = pick_variant("promo", version, ARMS, recipient)
    assert first is not None
    assert pick_variant("promo", version, ARMS, recipient) == first
    assert pick_variant("promo", version, ARMS, recipient.upper()) == first


@given(recipient=st.emails())
def test_an_arm_of_weight_zero_is_never_picked(recipient: str):
    arms = (Variant("off", 0), Variant("on", 1))
    assert pick_variant("promo", 1, arms, recipient).name == "on"  # type: ignore[union-attr]


def test_no_arms_or_no_weight_is_no_variant():
    assert pick_variant("promo", 1, (), "ann@example.com") is None
    assert pick_variant("promo", 1, (Variant("off", 0),), "ann@example.com") is None


def test_the_arms_get_their_weights_share():
    counts = Counter(pick_variant("promo", 4, ARMS, f"person{n}@example.com").name  # type: ignore[union-attr]
                     for n in range(20_000))
    assert abs(counts["a"] / 20_000 - 0.25) < 0.015 and abs(counts["b"] / 20_000 - 0.75) < 0.015


def test_each_version_is_its_own_experiment():
    """A new version reshuffles: the same people are not always in the same arm."""
    people = [f"person{n}@example.com" for n in range(200)]
    first = [pick_variant("promo", 1, ARMS, p) for p in people]
    second = [pick_variant("promo", 2, ARMS, p) for p in people]
    assert first != second


# --- the catalog ---------------------------------------------------------------------------------

def _file_templates() -> set[str]:
    names = {path.stem for path in TEMPLATES_DIR.glob("*.txt")} | {path.stem for path in TEMPLATES_DIR.glob("*.html")}
    return names - {"base"}


def test_every_file_template_is_in_the_catalog_and_nothing_else_is():
    assert set(CATALOG.templates) == _file_templates()
    for name in _file_templates():
        assert (TEMPLATES_DIR / f"{name}.txt").is_file() and (TEMPLATES_DIR / f"{name}.html").is_file(), name


def test_every_catalog_entry_has_a_seeded_category_and_a_description():
    for name, entry in CATALOG.templates.items():
        assert entry.category in SEEDED_CATEGORIES, name
        assert entry.description and "\n" not in entry.description, name
    assert set(CATALOG.send_step) <= SEND_STEP_VARIABLES


@pytest.mark.parametrize("name", sorted(_file_templates()))
def test_every_file_template_renders_with_its_sample(name: str):
    out = Renderer().render(name, {**CATALOG.send_step, **CATALOG.templates[name].sample})
    assert out.subject and out.text.strip() and "</html>" in out.html


# --- CSS inlining --------------------------------------------------------------------------------

STYLED = Source(
    subject="Hello {{ recipient_name }}",
    text='{% extends "base.txt" %}{% block body %}Hello {{ recipient_name }}{% endblock %}',
    html='{% extends "base.html" %}{% block body %}<style>p.lead { color: #b91c1c; font-size: 18px } '
         '@media (max-width: 600px) { p.lead { font-size: 14px } }</style>'
         '<p class="lead">Hello {{ recipient_name }}</p>{% endblock %}')


def test_a_saved_versions_styles_move_into_style_attributes_and_media_queries_stay(renderer: Renderer):
    out = renderer.render("styled", dict(CATALOG.send_step), source=STYLED)
    assert '<p class="lead" style="color: #b91c1c;font-size: 18px;">Hello Ada Lovelace</p>' in out.html
    assert "@media (max-width: 600px)" in out.html and "p.lead { color" not in out.html
    assert out.subject == "Hello Ada Lovelace" and out.text.startswith("Hello Ada Lovelace\n")


def test_a_file_templates_styles_are_inlined_too(tmp_path: Path):
    (tmp_path / "styled.txt").write_text("{% set subject %}Hi{% endset %}Hi\n")
    (tmp_path / "styled.html").write_text("<style>a { color: red }</style><p><a href='https://x.example'>x</a></p>")
    out = Renderer(directory=tmp_path).render("styled", {})
    assert '<a href="https://x.example" style="color: red;">x</a>' in out.html and "<style>" not in out.html


def test_a_link_to_a_stylesheet_is_dropped_never_fetched(renderer: Renderer):
    linked = Source("s", "t", '<link rel="stylesheet" href="http://127.0.0.1:9/x.css"><p>x</p>')
    assert "<link" not in renderer.render("linked", {}, source=linked).html


# --- a saved version in the child process --------------------------------------------------------

def test_the_child_renders_what_this_process_would(renderer: Renderer):
    context = {**CATALOG.send_step, "recipient_name": "Zoë <b>"}
    assert renderer.render("styled", context, source=STYLED) == Renderer(isolated=False).render(
        "styled", context, source=STYLED)


def test_a_variants_parts_replace_the_versions():
    assert STYLED.over({"subject": "Other", "html": ""}) == Source("Other", STYLED.text, STYLED.html)


def test_the_variables_a_part_reads_come_with_their_first_line(renderer: Renderer):
    read = renderer.variables("html", '{% extends "base.html" %}{% block body %}\n<p>{{ a }}</p>\n'
                                      '{% for row in rows %}{{ row.x }}{{ a }}{% endfor %}{% endblock %}')
    assert read == {"a": 2, "rows": 3}


@pytest.mark.parametrize(("body", "line"), [("ok\n{% if %}", 2), ("\n\n{{ x | no_such_filter }}", 3)])
def test_a_syntax_error_or_unknown_filter_names_its_line(renderer: Renderer, body: str, line: int):
    with pytest.raises(TemplateProblem) as caught:
        renderer.variables("text", body)
    assert (caught.value.field, caught.value.line) == ("text", line)


def test_a_runtime_error_names_its_part_and_line(renderer: Renderer):
    with pytest.raises(TemplateProblem) as caught:
        renderer.render("t", {}, source=Source("s", "t", "<p>\n\n{{ ''.__class__ }}</p>"))
    assert (caught.value.field, caught.value.line) == ("html", 3)
    assert "unsafe" in caught.value.reason


def test_a_render_past_the_size_cap_is_refused():
    with pytest.raises(TemplateProblem, match="more than 1000 characters"):
        Renderer(isolated=False, max_size=1000).render(
            "big", {}, source=Source("s", "t", "{% for i in range(2000) %}x{% endfor %}"))


LOOP = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"  # 10^10 turns


@pytest.mark.parametrize(("body", "error"), [
    ("{{ 'x' * 10**9 }}", TemplateProblem),  # a gigabyte: past the child's memory, the template's fault for good
    (LOOP, RenderTimeout),  # past the time limit: on a loaded machine a good template may be too, so retried
])
def test_a_template_that_allocates_or_loops_without_end_is_refused_and_the_next_render_works(body: str, error: type):
    renderer = Renderer(timeout=1.0)
    try:
        with pytest.raises(error) as caught:
            renderer.render("evil", {}, source=Source("s", "t", body))
        assert (caught.value.field, caught.value.line) == ("html", 1)
        assert renderer.render("fine", {}, source=Source("Hi", "t", "<p>ok</p>")).subject == "Hi"
    finally:
        renderer.close()


def test_a_render_stopped_from_outside_is_no_template_problem():
    """The send step fails a TemplateProblem for good and retries anything else: a RenderTimeout
    (a loaded machine, a dead child) must be anything else."""
    assert not issubclass(RenderTimeout, TemplateProblem) and issubclass(RenderTimeout, Exception)


def test_a_render_whose_child_dies_is_a_render_timeout():
    renderer = Renderer(timeout=30.0)
    try:
        renderer.render("fine", {}, source=Source("Hi", "t", "<p>ok</p>"))  # the child is up
        child = renderer._child.process  # type: ignore[union-attr]
        outcome: list[BaseException] = []

        def render() -> None:
            try:
                renderer.render("evil", {}, source=Source("s", "t", LOOP))
            except BaseException as err:  # noqa: BLE001 (what the test looks at)
                outcome.append(err)

        thread = threading.Thread(target=render)
        thread.start()
        time.sleep(0.5)
        child.kill()  # the machine kills it (the OOM killer, say) mid-render
        thread.join(timeout=10)
        assert len(outcome) == 1 and isinstance(outcome[0], RenderTimeout), outcome
        assert "died" in str(outcome[0])
        assert renderer.render("fine", {}, source=Source("Hi", "t", "<p>ok</p>")).subject == "Hi"  # a new child
    finally:
        renderer.close()


async def test_a_version_past_the_time_limit_is_refused_when_saved():
    renderer = Renderer(timeout=0.5)
    try:
        problems = await check(renderer, "slow", Source("s", "t", f"<p>\n{LOOP}</p>"), [], set(), {})
    finally:
        renderer.close()
    assert [(p.field, p.line) for p in problems] == [("html", 2)] and "took longer" in problems[0].reason


# --- autoescaping --------------------------------------------------------------------------------

IMG = '<img src=x onerror="alert(1)">'


@pytest.mark.parametrize("isolated", [True, False])
def test_a_text_file_included_in_the_html_part_is_escaped(renderer: Renderer, isolated: bool):
    """Autoescape by environment, not by file name: a .txt file included in HTML prints its values escaped."""
    source = Source("Hi", "t", '<div>{% include "payment_reminder.txt" %}</div>')
    context = {**CATALOG.send_step, **CATALOG.templates["payment_reminder"].sample, "payer_name": IMG}
    out = (renderer if isolated else Renderer(isolated=False)).render("payment_reminder", context, source=source)
    assert "Hello &lt;img src=x onerror=" in out.html and "<img" not in out.html
    text = Renderer(isolated=False).render("payment_reminder", context)  # the text part stays unescaped
    assert f"Hello {IMG}," in text.text


# --- the child's environment ---------------------------------------------------------------------

SECRETS = {"FOLLOWUPS_SIGNING_SECRET": "s1", "FOLLOWUPS_ANYTHING": "s2", "DATABASE_URL": "postgresql://u:p@h/d",
           "SMTP_PASSWORD": "s3", "DKIM_PRIVATE_KEY": "s4", "AWS_SECRET_ACCESS_KEY": "s5", "api_token": "s6"}


def test_the_childs_environment_keeps_what_python_needs_and_no_secret():
    given = {**SECRETS, "PATH": "/usr/bin", "HOME": "/home/x", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
             "PYTHONPATH": "/src", "VIRTUAL_ENV": "/venv", "SMTP_HOST": "mail", "LC_SECRET": "s7"}
    assert child_environment(given) == {"PATH": "/usr/bin", "HOME": "/home/x", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
                                        "PYTHONPATH": "/src", "VIRTUAL_ENV": "/venv"}


def test_the_rendering_child_cannot_see_our_secrets(monkeypatch: pytest.MonkeyPatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    renderer = Renderer()  # its child starts now, with this environment
    try:
        assert renderer.render("fine", {}, source=Source("Hi", "t", "<p>ok</p>")).subject == "Hi"
        seen = renderer._child.call((ENVIRONMENT_NAMES, None, None, ()))  # type: ignore[union-attr]
    finally:
        renderer.close()
    assert "PATH" in seen and not set(SECRETS) & set(seen), seen
    assert not [name for name in seen if "SECRET" in name.upper() or name.upper().startswith("FOLLOWUPS_")]
    assert set(SECRETS) <= set(os.environ)  # ours kept them
