"""Templates in PostgreSQL through the HTTP API on a real socket: versions saved after a sandbox
compile and a render, published, previewed; the version a journey started under stays in force for
it; every refusal names its field and line; a file template's version reads only what its journeys
send (a sample adds no variable); template injection payloads refused or inert, HTML escaped even
from an included text file.

Only names made here are published: a published version of a file template would change what every
other test of the session sends."""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg
import httpx
import pytest
import pytest_asyncio

from activities.render import TemplateProblem
from activities.template_store import TemplateStore

pytestmark = pytest.mark.integration

HTML = """{% extends "base.html" %}
{% block body %}
<style>a.offer { color: #1f6feb; font-weight: bold }</style>
<p>Hello {{ recipient_name }},</p>
<p><a class="offer" href="{{ offer_url }}">{{ headline }}</a></p>
{% endblock %}"""
TEXT = """{% extends "base.txt" %}
{% block body %}
Hello {{ recipient_name }},

{{ headline }}: {{ offer_url }}
{% endblock %}"""
SAMPLE = {"headline": "Spring offer", "offer_url": "https://shop.example.com/spring"}


def version_body(**over) -> dict:
    return {"subject": "{{ headline }} for {{ recipient_name }}", "text": TEXT, "html": HTML,
            "category": "marketing", "sample": SAMPLE, **over}


@pytest_asyncio.fixture
async def http(stack):
    async with httpx.AsyncClient(base_url=stack.base_url, headers=stack.headers, timeout=30) as client:
        yield client


@pytest_asyncio.fixture
async def store(stack):
    pool = await asyncpg.create_pool(stack.settings.database_url, min_size=1, max_size=2)
    templates = TemplateStore(pool)
    yield templates
    templates.renderer.close()
    await pool.close()


async def test_save_publish_and_preview_a_new_template(http: httpx.AsyncClient, uid: str):
    name = f"promo_{uid}"
    saved = await http.post(f"/v1/templates/{name}/versions", json=version_body())
    assert saved.status_code == 201, saved.text
    assert (saved.json()["version"], saved.json()["category"], saved.json()["created"]) == (1, "marketing", True)
    again = await http.post(f"/v1/templates/{name}/versions", json=version_body())
    assert (again.status_code, again.json()["version"], again.json()["created"]) == (200, 1, False)

    published = await http.post(f"/v1/templates/{name}/versions/1/publish")
    assert published.status_code == 201, published.text
    repeat = await http.post(f"/v1/templates/{name}/versions/1/publish")
    assert (repeat.status_code, repeat.json()["published_at"]) == (200, published.json()["published_at"])

    preview = await http.post(f"/v1/templates/{name}/preview",
                              json={"context": {"recipient_name": "Zoë <Z>", "headline": "Last days"}})
    assert preview.status_code == 200, preview.text
    out = preview.json()
    assert (out["version"], out["variant"], out["category"]) == (1, None, "marketing")
    assert out["subject"] == "Last days for Zoë <Z>"
    assert "Hello Zoë <Z>," in out["text"] and "Last days: https://shop.example.com/spring" in out["text"]
    assert "Hello Zoë &lt;Z&gt;," in out["html"]  # autoescaped
    assert 'style="color: #1f6feb;font-weight: bold;"' in out["html"] and "<style>" not in out["html"]  # inlined
    assert "Unsubscribe" in out["html"]  # the base layout's footer

    listed = {t["name"]: t for t in (await http.get("/v1/templates")).json()["templates"]}
    assert listed[name] | {"published_at": None} == {
        "name": name, "category": "marketing", "description": None, "file_default": False,
        "published_version": 1, "published_at": None, "latest_version": 1}
    assert listed["interview_reminder"]["file_default"] and listed["interview_reminder"]["category"] == "reminders"
    assert listed["lead_welcome"]["category"] == "marketing"
    detail = (await http.get(f"/v1/templates/{name}")).json()
    assert [v["version"] for v in detail["versions"]] == [1] and [p["version"] for p in detail["publications"]] == [1]


async def test_a_file_templates_version_takes_its_catalog_category_and_sample(http: httpx.AsyncClient):
    body = {"subject": "Reminder: {{ candidate_name }}", "text": "Hello {{ candidate_name }}: {{ slot_selection_url }}",
            "html": "<p>Hello {{ candidate_name }}</p>"}  # saved, never published (see the module's docstring)
    saved = await http.post("/v1/templates/interview_reminder/versions", json=body)
    assert saved.status_code in (200, 201), saved.text
    assert saved.json()["category"] == "reminders" and "slot_selection_url" in saved.json()["sample"]
    file_preview = await http.post("/v1/templates/interview_reminder/preview", json={"context": {}})
    assert file_preview.status_code == 200 and file_preview.json()["version"] is None  # nothing published
    assert "Reminder: your interview on" in file_preview.json()["subject"]


async def test_a_journey_keeps_the_version_in_force_when_it_started(http: httpx.AsyncClient, store: TemplateStore,
                                                                     uid: str):
    name = f"pinned_{uid}"
    for subject in ("Version one", "Version two"):
        assert (await http.post(f"/v1/templates/{name}/versions", json=version_body(subject=subject))).status_code == 201
    first = (await http.post(f"/v1/templates/{name}/versions/1/publish")).json()
    assert (await store.resolve(name, as_of=None, recipient="ann@example.com")).version == 1
    started = datetime.fromisoformat(first["published_at"])  # a journey that started as version 1 came in force
    second = (await http.post(f"/v1/templates/{name}/versions/2/publish")).json()
    assert datetime.fromisoformat(second["published_at"]) > started

    fresh = TemplateStore(store.pool, store.renderer)  # another process's view: nothing cached
    for as_of in (started, started + timedelta(microseconds=1)):
        pinned = await fresh.resolve(name, as_of=as_of, recipient="ann@example.com")
        assert (pinned.version, pinned.category, pinned.source.subject) == (1, "marketing", "Version one")
    assert (await fresh.resolve(name, as_of=None, recipient="ann@example.com")).version == 2
    # a journey started before the template existed gets its first publication
    assert (await fresh.resolve(name, as_of=started - timedelta(days=1), recipient="ann@example.com")).version == 1
    history = (await http.get(f"/v1/templates/{name}")).json()["publications"]
    assert [p["version"] for p in history] == [1, 2]
    preview = await http.post(f"/v1/templates/{name}/preview", json={"as_of": first["published_at"], "context": {}})
    assert (preview.json()["version"], preview.json()["subject"]) == (1, "Version one")
    latest = await http.post(f"/v1/templates/{name}/preview", json={"context": {}})
    assert (latest.json()["version"], latest.json()["subject"]) == (2, "Version two")


async def test_a_file_template_resolves_to_its_file_until_a_version_is_published(store: TemplateStore):
    resolved = await store.resolve("payment_confirmation", as_of=None, recipient="pat@example.com")
    assert (resolved.version, resolved.variant, resolved.category, resolved.source) == (None, None, "transactional", None)
    with pytest.raises(TemplateProblem):
        await store.resolve("no_such_template_anywhere", as_of=None, recipient="pat@example.com")


async def test_a_recipient_gets_the_same_variant_and_output_every_time(http: httpx.AsyncClient, uid: str):
    name = f"ab_{uid}"
    body = version_body(variants=[{"name": "plain", "weight": 1},
                                  {"name": "urgent", "weight": 1, "subject": "Hurry, {{ recipient_name }}!"}])
    assert (await http.post(f"/v1/templates/{name}/versions", json=body)).status_code == 201
    assert (await http.post(f"/v1/templates/{name}/versions/1/publish")).status_code == 201

    async def preview(recipient: str) -> dict:
        answer = await http.post(f"/v1/templates/{name}/preview", json={"recipient": recipient, "context": {}})
        assert answer.status_code == 200, answer.text
        return answer.json()

    first = await preview("Pat@Example.com")
    assert [await preview(r) for r in ("Pat@Example.com", "pat@example.com", "PAT@EXAMPLE.COM")] == [first] * 3
    seen = {(await preview(f"person{n}@example.com"))["variant"] for n in range(24)}
    assert seen == {"plain", "urgent"}
    urgent = await http.post(f"/v1/templates/{name}/preview", json={"variant": "urgent", "context": {}})
    assert urgent.json()["subject"] == "Hurry, Ada Lovelace!"
    assert "Spring offer" in urgent.json()["html"]  # the version's own html: the variant set only its subject


def problems(answer: httpx.Response) -> list[tuple[str, int | None]]:
    assert answer.status_code == 422, answer.text
    return [(p["field"], p["line"]) for p in answer.json()["detail"]]


async def test_refusals_name_the_field_and_the_line(http: httpx.AsyncClient, uid: str):
    path = f"/v1/templates/bad_{uid}/versions"
    syntax = await http.post(path, json=version_body(html="<p>\n{% if headline %}\n<b>unclosed</b>\n"))
    assert problems(syntax) == [("html", 3)] and "endif" in syntax.json()["detail"][0]["reason"]
    unknown = await http.post(path, json=version_body(text="Hello\n\n{{ coupon_code }}\n"))
    assert problems(unknown) == [("text", 3)] and "'coupon_code'" in unknown.json()["detail"][0]["reason"]
    variant = await http.post(path, json=version_body(variants=[{"name": "b", "weight": 1, "html": "<p>{{ nope }}</p>"}]))
    assert problems(variant) == [("variants.0.html", 1)]
    several = await http.post(path, json=version_body(subject="{{ a }}", text="{{ b }}", category=None))
    assert set(problems(several)) == {("category", None), ("subject", 1), ("text", 1)}
    bad_filter = await http.post(path, json=version_body(html="<p>\n{{ headline | shout }}</p>"))
    assert problems(bad_filter) == [("html", 2)]
    assert (await http.get(f"/v1/templates/bad_{uid}")).status_code == 404  # nothing was saved
    assert (await http.post("/v1/templates/Bad-Name/versions", json=version_body())).status_code == 422
    assert (await http.post("/v1/templates/base/versions", json=version_body())).status_code == 422
    assert (await http.post(f"/v1/templates/bad_{uid}/versions/1/publish")).status_code == 404
    assert (await http.post("/v1/templates/interview_reminder/preview", json={"version": 999_999})).status_code == 404
    wrong = await http.post("/v1/templates/payment_reminder/preview", json={"context": {"amount": "lots"}})
    assert wrong.status_code == 422 and "money" in wrong.text


async def test_a_sample_adds_no_variable_to_a_file_template(http: httpx.AsyncClient):
    """A payment reminder reading `made_up` would fail every send once published: its journey never
    sends it, whatever the sample said when it was saved."""
    before = (await http.get("/v1/templates/payment_reminder")).json()["latest_version"]
    body = {"subject": "Reminder", "text": "Hello {{ payer_name }}\n{{ made_up }}\n", "html": "<p>{{ payer_name }}</p>",
            "sample": {"made_up": "x"}}
    refused = await http.post("/v1/templates/payment_reminder/versions", json=body)
    assert set(problems(refused)) == {("text", 2), ("sample.made_up", None)}
    text = next(p for p in refused.json()["detail"] if p["field"] == "text")
    assert "'made_up'" in text["reason"] and "payer_name" in text["reason"]
    assert (await http.get("/v1/templates/payment_reminder")).json()["latest_version"] == before  # nothing saved
    # its own variables, and the send step's, may take other sample values
    given = {**body, "text": "Hello {{ payer_name }}\n", "sample": {"payer_name": "Pat", "recipient_name": "Pat P"}}
    saved = await http.post("/v1/templates/payment_reminder/versions", json=given)  # saved, never published
    assert saved.status_code in (200, 201), saved.text
    assert saved.json()["sample"]["payer_name"] == "Pat" and "made_up" not in saved.json()["sample"]


async def test_a_text_file_included_in_a_saved_html_part_is_escaped(http: httpx.AsyncClient):
    body = {"subject": "Reminder", "text": "Hello {{ payer_name }}\n",
            "html": '<div>{% include "payment_reminder.txt" %}</div>'}
    saved = await http.post("/v1/templates/payment_reminder/versions", json=body)  # saved, never published
    assert saved.status_code in (200, 201), saved.text
    evil = '<img src=x onerror="alert(1)">'
    preview = await http.post("/v1/templates/payment_reminder/preview",
                              json={"version": saved.json()["version"], "context": {"payer_name": evil}})
    assert preview.status_code == 200, preview.text
    html = preview.json()["html"]
    assert "Hello &lt;img src=x onerror=" in html and "<img" not in html
    assert f"Hello {evil}" in preview.json()["text"]  # the text part is plain text: never escaped


SSTI = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{{ self._TemplateReference__context }}",
    "{{ lipsum.__globals__ }}",
    "{{ config }}",
    "{{ ''|attr('__class__') }}",
    "{{ '{0.__class__}'.format(1) }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ range(10**9)|list }}",
    "{{ request.application.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ 'x' * 10**9 }}",
]
LEAKS = ("<class", "<function", "<module", "object at 0x", "__globals__", "__builtins__", "subprocess")


@pytest.mark.parametrize("payload", SSTI)
@pytest.mark.parametrize("part", ["html", "text", "subject"])
async def test_template_injection_is_refused_or_inert(http: httpx.AsyncClient, uid: str, payload: str, part: str):
    name = f"ssti_{uid}"
    placed = f"Hi\n{payload}" if part != "subject" else payload
    answer = await http.post(f"/v1/templates/{name}/versions", json=version_body(**{part: placed}))
    if answer.status_code == 422:
        assert problems(answer)[0] == (part, 1 if part == "subject" else 2), answer.text
        return
    assert answer.status_code == 201, answer.text
    out = (await http.post(f"/v1/templates/{name}/preview", json={"context": {}})).json()
    assert not any(leak in out.get(key, "") for key in ("subject", "text", "html") for leak in LEAKS), out
