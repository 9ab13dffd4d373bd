"""Categories and preferences (issue 10): the API backends call, the hosted preference page that a
signed link in every footer opens, and the one-click unsubscribe of RFC 8058.

A person's browser gets HTML pages, and a GET of a page never changes anything: link scanners
fetch every URL in a message. Only a form POST does. One-click unsubscribes from the message's
category; "everything" lives on the preference page.
"""

from __future__ import annotations

import urllib.parse
from html import escape
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse
from pydantic import AfterValidator, BaseModel, Field

from activities import tokens
from activities.lifecycle import Lifecycle
from activities.mail import for_display
from activities.preferences import (
    CHANNELS, Categories, Category, Erased, Preferences, RecipientPreferences, parse_window, preferences_url,
)
from settings import Settings
from starter.service import Conflict, Rejected
from starter.views import ErrorBody
from workflows.core.fields import Flag, ShortText, TimeZone


def _window(value: str) -> str:
    parse_window(value)
    return value


SendWindow = Annotated[str, Field(max_length=11, examples=["08:00-21:00"]), AfterValidator(_window)]
CategoryName = Annotated[str, Path(pattern=r"^[a-z][a-z0-9_]{0,62}$", description="e.g. marketing")]
Address = Annotated[str, Path(min_length=3, max_length=320, pattern=r"^[^@\s/]+@[^@\s/]+$")]
CHANNEL_NAMES = {"email": "Email", "in_app": "In the app", "webhook": "Text messages"}


class CategoryBody(BaseModel):
    description: ShortText = ""
    critical: Flag = Field(False, description="sent whatever the recipient chose (never to a suppressed address)")
    send_window: SendWindow | None = Field(None, description='local hours it may go out, "HH:MM-HH:MM"; '
                                                             "null: the recipient's or the service's")
    daily_cap: Annotated[int, Field(ge=1, le=10_000, strict=True)] | None = Field(
        None, description="at most this many per recipient and local day, across journeys; null: no cap")
    cap_policy: Literal["defer", "drop"] = Field("defer", description="what happens to a message over the cap")
    model_config = {"extra": "forbid"}


class CategoryView(CategoryBody):
    name: str


class PreferencesBody(BaseModel):
    """Replaces everything stored for the address: a category or channel left out is subscribed."""

    unsubscribed_all: Flag = Field(False, description="nothing but critical categories")
    send_window: SendWindow | None = Field(None, description='the recipient\'s own hours, "HH:MM-HH:MM", over '
                                                             "the category's")
    time_zone: TimeZone = Field(None, description="IANA, e.g. Europe/Paris: where the send window is read")
    categories: dict[str, dict[str, Flag]] = Field(
        default_factory=dict, description="category → channel (email, in_app, webhook) → subscribed",
        examples=[{"marketing": {"email": False}}])
    model_config = {"extra": "forbid"}


class PreferencesView(PreferencesBody):
    email: str
    suppressed: str | None = Field(None, description="read-only: why nothing at all is sent to the address")


def _view(prefs: RecipientPreferences, known: list[Category]) -> PreferencesView:
    return PreferencesView(
        email=prefs.email, unsubscribed_all=prefs.unsubscribed_all, send_window=prefs.send_window,
        time_zone=prefs.time_zone, suppressed=prefs.suppressed,
        categories={c.name: {channel: prefs.subscribed(c.name, channel) for channel in CHANNELS} for c in known})


def _stores(request: Request) -> tuple[Categories, Preferences]:
    """Made on first use (the pool exists only once the app has started), kept for the cache."""
    state = request.app.state
    if getattr(state, "preference_stores", None) is None:
        state.preference_stores = (Categories(state.pool), Preferences(state.pool))
    return state.preference_stores


# A person's browser gets pages; what only a program could send (a control character in the URL, a
# body over the limit) gets the API's JSON error, as everywhere else.
PAGES = {"response_class": HTMLResponse, "responses": {
    404: {"description": "A link this service did not sign: an HTML page saying so",
          "content": {"text/html": {"schema": {"type": "string"}}}},
    **{code: {"model": ErrorBody, "content": {"application/json": {}}} for code in (400, 413, 422, 503)}}}


def router(authed: list, settings: Settings) -> APIRouter:
    api = APIRouter()
    secret = settings.signing_secret.get_secret_value()

    # --- the API ------------------------------------------------------------------------------

    @api.get("/v1/categories", dependencies=authed, tags=["preferences"])
    async def list_categories(request: Request) -> list[CategoryView]:
        """Every category a template may declare, critical or not, with its send window and cap."""
        return [CategoryView(**vars(c)) for c in await _stores(request)[0].list()]

    @api.put("/v1/categories/{name}", dependencies=authed, tags=["preferences"])
    async def put_category(name: CategoryName, body: CategoryBody, request: Request) -> CategoryView:
        """Create a category or replace its fields. Other processes see a change within seconds."""
        await _stores(request)[0].put(Category(name=name, **body.model_dump()))
        return CategoryView(name=name, **body.model_dump())

    @api.get("/v1/preferences/{email}", dependencies=authed, tags=["preferences"])
    async def get_preferences(email: Address, request: Request) -> PreferencesView:
        """What the address receives: every category × channel (true unless they opted out)."""
        categories, prefs = _stores(request)
        return _view(await prefs.get(email), await categories.list())

    @api.put("/v1/preferences/{email}", dependencies=authed, tags=["preferences"])
    async def put_preferences(email: Address, body: PreferencesBody, request: Request) -> PreferencesView:
        """Replace the address's preferences. 409 for an erased address: nothing about it is stored again."""
        categories, prefs = _stores(request)
        known = {c.name for c in await categories.list()}
        for name, channels in body.categories.items():
            if name not in known and await categories.get(name, fresh=True) is None:
                raise Rejected(f"unknown category {name!r}: one of {', '.join(sorted(known))}", field=f"categories.{name}")
            for channel in channels:
                if channel not in CHANNELS:
                    raise Rejected(f"unknown channel {channel!r}: one of {', '.join(CHANNELS)}",
                                   field=f"categories.{name}.{channel}")
        try:
            saved = await prefs.put(email, unsubscribed_all=body.unsubscribed_all, send_window=body.send_window,
                                    time_zone=body.time_zone, choices=body.categories)
        except Erased as err:
            raise Conflict(str(err), field="email") from err
        return _view(saved, await categories.list())

    # --- the hosted preference page -----------------------------------------------------------

    def page_owner(token: str) -> str | HTMLResponse:
        try:
            return tokens.verify_preferences(secret, token)
        except tokens.BadToken as err:
            return _page("Link not valid", f"<p>This preference link is not valid ({escape(str(err))}). "
                         "Use the link in the latest email you received.</p>", 404)

    async def preference_page(request: Request, email: str, note: str = "") -> HTMLResponse:
        categories, prefs = _stores(request)
        shown = await prefs.get(email)
        return _page("Your email preferences", note + _form(shown, await categories.list()))

    @api.get("/v1/preferences/page/{token}", tags=["preferences"], **PAGES)
    async def show_preferences(token: str, request: Request) -> HTMLResponse:
        """The page a footer link opens: a toggle per category and channel, and "unsubscribe from
        everything". Showing it changes nothing."""
        email = page_owner(token)
        return email if isinstance(email, HTMLResponse) else await preference_page(request, email)

    @api.post("/v1/preferences/page/{token}", tags=["preferences"], **PAGES)
    async def save_preferences(token: str, request: Request) -> HTMLResponse:
        """The page's form: the categories it showed take the ticked boxes; then the saved state."""
        email = page_owner(token)
        if isinstance(email, HTMLResponse):
            return email
        categories, prefs = _stores(request)
        form = urllib.parse.parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
        ticked = set(form.get("choice", []))
        editable = {c.name for c in await categories.list() if not c.critical}
        choices = {name: {channel: f"{name}:{channel}" in ticked for channel in CHANNELS}
                   for name in set(form.get("shown", [])) & editable}  # one added since is left as it is
        everything = "everything" in form.get("action", []) or "yes" in form.get("unsubscribed_all", [])
        try:
            before = await prefs.get(email)
            await prefs.save(email, choices, unsubscribed_all=everything)
        except Erased:
            return _page("Nothing stored", _ERASED)
        left = [f"{name} ({channel})" for name, chosen in choices.items() for channel, on in chosen.items()
                if not on and before.subscribed(name, channel)] + (["everything"] if everything and
                                                                   not before.unsubscribed_all else [])
        if left:  # the figures count an unsubscribe from the page like one by the link
            await Lifecycle(request.app.state.pool).record(kind="unsubscribed", email=email,
                                                           reason=f"preference page: unsubscribed from {', '.join(left)}")
        return await preference_page(request, email, '<p role="status"><b>Saved.</b></p>')

    # --- one-click unsubscribe ----------------------------------------------------------------

    def unsubscribe_owner(token: str) -> tuple[str, str] | HTMLResponse:
        """The address and message key a link names, or the page a browser gets for a bad link."""
        try:
            return tokens.verify(secret, token)
        except tokens.BadToken as err:
            return _page("Link not valid", f"<p>This unsubscribe link is not valid ({escape(str(err))}). "
                         "Use the link in the latest email you received.</p>", 404)

    async def message_of(request: Request, key: str) -> tuple[bool, tuple[Category, str] | None]:
        """Whether the message is in the log, and its category and channel when it may be left on
        its own; None for a critical category or a message no longer (or never) in the log: then
        only "everything" can be meant."""
        row = await request.app.state.pool.fetchrow("SELECT category, channel FROM messages WHERE key = $1", key)
        category = row and await _stores(request)[0].get(row["category"])
        return row is not None, (category, row["channel"]) if category and not category.critical else None

    def manage(email: str) -> str:
        return (f'<p>Choose what you receive, or unsubscribe from everything, on <a href="'
                f'{escape(preferences_url(settings.public_base_url, secret, email))}">your preferences page</a>.</p>')

    @api.get("/v1/unsubscribe/{token}", tags=["unsubscribe"], **PAGES)
    async def unsubscribe_page(token: str, request: Request) -> HTMLResponse:
        """A page with a button. A GET never unsubscribes: link scanners fetch every URL. An address
        that mixes scripts shows as punycode (`xn--da-6kc@example.com`)."""
        owner = unsubscribe_owner(token)
        if isinstance(owner, HTMLResponse):
            return owner
        email, key = owner
        found = (await message_of(request, key))[1]
        what = f"{escape(found[0].name)} messages" if found else "all emails"
        return _page("Unsubscribe", f"<p>Stop {what} to <b>{escape(for_display(email))}</b>?</p>"
                     f'<form method="post"><button type="submit">Unsubscribe</button></form>{manage(email)}')

    @api.post("/v1/unsubscribe/{token}", tags=["unsubscribe"], **PAGES)
    async def unsubscribe(token: str, request: Request) -> HTMLResponse:
        """RFC 8058 one-click: `List-Unsubscribe=One-Click` POSTs here; no cookie, no redirect. It
        unsubscribes from the message's category on its channel; from a critical category's message
        (or one no longer kept) it unsubscribes from everything, and critical messages still come."""
        owner = unsubscribe_owner(token)
        if isinstance(owner, HTMLResponse):
            return owner
        email, key = owner
        (in_log, found), prefs = await message_of(request, key), _stores(request)[1]
        shown = f"<b>{escape(for_display(email))}</b>"
        try:
            if found:
                category, channel = found
                changed = await prefs.choose(email, category.name, channel, False)
                reason = f"unsubscribed from {category.name} ({channel})"
                said = f"<p>{shown} will receive no more {escape(category.name)} messages " \
                       f"({CHANNEL_NAMES.get(channel, channel).lower()}).</p>"
            else:
                changed, reason = await prefs.unsubscribe_all(email), "unsubscribed from everything"
                said = f"<p>{shown} will receive no more emails, but for critical messages (about something " \
                       "you booked or paid for), which still come.</p>"
        except Erased:
            return _page("Nothing stored", _ERASED)
        if changed:  # a mail client posting twice is one unsubscribe in the figures
            await Lifecycle(request.app.state.pool).record(kind="unsubscribed", key=key if in_log else None,
                                                           email=email, reason=f"one-click: {reason}")
        return _page("Unsubscribed", said + manage(email))

    return api


_ERASED = "<p>Nothing is stored about this address any more, and nothing is sent to it.</p>"


def _form(prefs: RecipientPreferences, categories: list[Category]) -> str:
    """The page's one form: a fieldset per category the person may turn off (a box per channel),
    the critical ones listed as always sent, and "unsubscribe from everything"."""
    if prefs.suppressed == "erased":
        return _ERASED
    parts = [f"<p>For <b>{escape(for_display(prefs.email))}</b>.</p>"]
    if prefs.suppressed:
        parts.append(f"<p>Nothing is sent to this address at the moment ({escape(prefs.suppressed.split(':')[0])}).</p>")
    parts.append('<form method="post">')
    for c in (c for c in categories if not c.critical):
        boxes = "".join(
            f'<label><input type="checkbox" name="choice" value="{c.name}:{channel}"'
            f'{" checked" if prefs.subscribed(c.name, channel) else ""}> {label}</label> '
            for channel, label in CHANNEL_NAMES.items())
        parts.append(f'<fieldset><legend>{escape(c.name.capitalize())}</legend><p>{escape(c.description)}</p>'
                     f'{boxes}<input type="hidden" name="shown" value="{c.name}"></fieldset>')
    always = "".join(f"<li><b>{escape(c.name.capitalize())}</b>: {escape(c.description)}</li>"
                     for c in categories if c.critical)
    if always:
        parts.append(f"<p>Always sent, whatever you choose here:</p><ul>{always}</ul>")
    parts.append(f'<p><label><input type="checkbox" name="unsubscribed_all" value="yes"'
                 f'{" checked" if prefs.unsubscribed_all else ""}> Unsubscribed from everything '
                 "(but the messages always sent)</label></p>"
                 '<button type="submit" name="action" value="save">Save</button> '
                 '<button type="submit" name="action" value="everything">Unsubscribe from everything</button></form>')
    return "".join(parts)


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    # The token in the URL is the key to the page: not in a Referer, not in a cache, not indexed.
    return HTMLResponse(
        f"<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content='width=device-width'>"
        f"<title>{title}</title></head><body style='font-family:sans-serif;max-width:36em;margin:4em auto'>"
        f"<h1>{title}</h1>{body}</body></html>", status_code=status,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"})
