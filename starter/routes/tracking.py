"""The open pixel and the click redirect (issue 10, part 3): `GET|HEAD /t/o/{token}`,
`GET|HEAD /t/c/{token}`.

No API key: recipients' mail clients call these. A token is signed (activities/tracking.py); a
click goes only to the URL stored for that message and link index, so a link can never be turned
into a redirect to anywhere else. Every open and click is kept, a machine's flagged with why.
"""

from __future__ import annotations

import logging

import asyncpg
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from activities.tokens import BadToken
from activities.tracking import Tracker, TrackingStore
from settings import Settings
from starter.views import ErrorBody

# The smallest transparent GIF: 1×1, one colour.
PIXEL = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
         b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
# Every fetch must reach us to be counted, and the token must not travel on in a Referer.
NO_STORE = {"Cache-Control": "no-store, no-cache, must-revalidate, max-age=0, private", "Pragma": "no-cache",
            "Expires": "0", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex, nofollow"}
_log = logging.getLogger(__name__)

_HTML_404 = {"description": "Not a link this service made: an HTML page saying so",
             "content": {"text/html": {"schema": {"type": "string"}}}}
_ERRORS = {code: {"model": ErrorBody, "content": {"application/json": {}}} for code in (422, 503)}


def router(settings: Settings) -> APIRouter:
    api = APIRouter(tags=["tracking"])
    tracker = Tracker(settings.public_base_url, settings.signing_secret.get_secret_value())

    pixel = {"response_class": Response, "responses": {
        200: {"description": "a 1×1 transparent GIF", "content": {"image/gif": {}}}, 404: _HTML_404, **_ERRORS}}
    redirect = {"response_class": RedirectResponse, "status_code": 302, "responses": {
        302: {"description": "to the link's URL as it was in the message"}, 404: _HTML_404, **_ERRORS}}

    @api.get("/t/o/{token}", **pixel)
    @api.head("/t/o/{token}", **pixel)
    async def open_pixel(token: str, request: Request) -> Response:
        """The open pixel of one message: records an open (flagged machine for image proxies, Apple
        Mail Privacy Protection, scanners, HEAD) and answers a 1×1 GIF nobody may cache."""
        try:
            key = tracker.opened(token)
        except BadToken:
            return _not_found()
        await _keep(TrackingStore(request.app.state.pool).record_open(
            key, method=request.method, user_agent=request.headers.get("user-agent")), key)
        return Response(PIXEL, media_type="image/gif", headers=NO_STORE)

    @api.get("/t/c/{token}", **redirect)
    @api.head("/t/c/{token}", **redirect)
    async def click(token: str, request: Request) -> Response:
        """A link of one message: records the click (flagged machine for scanners: HEAD, scanner
        user agents, on arrival, every link at once) and redirects to the URL stored for it."""
        try:
            key, idx = tracker.clicked(token)
        except BadToken:
            return _not_found()
        store = TrackingStore(request.app.state.pool)
        url = await store.link(key, idx)
        if url is None:  # signed by us, but that message (or index) is not stored: purged, or never sent
            return _not_found()
        await _keep(store.record_click(key, idx, url, method=request.method,
                                       user_agent=request.headers.get("user-agent")), key)
        return RedirectResponse(url, status_code=302, headers=NO_STORE)

    return api


async def _keep(recording, key: str) -> None:
    """A person's click or open is answered even if the event could not be kept."""
    try:
        await recording
    except (asyncpg.PostgresError, OSError) as err:
        _log.warning("%s: tracking event not recorded (%s: %s)", key, type(err).__name__, err)


def _not_found() -> HTMLResponse:
    return HTMLResponse("<!doctype html><html lang=en><head><meta charset=utf-8><title>Link not valid</title></head>"
                        "<body style='font-family:sans-serif;max-width:32em;margin:4em auto'><h1>Link not valid</h1>"
                        "<p>This link is not valid. Use the link in the email you received.</p></body></html>",
                        status_code=404, headers=NO_STORE)
