"""Open pixel and click redirect (issue 10, part 3).

A click URL names only (message key, link index) and a MAC: the URL itself stays in
`message_links`, so the redirect can only ever go where that rendered message pointed (no open
redirect), and a tampered token never verifies. Opens by image proxies and clicks by link
scanners are recorded flagged `machine` with the reason (see activities.machines):
a scanner's fetch is not a person reading.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import html
import re
from dataclasses import dataclass
from html.parser import HTMLParser, attrfind_tolerant, tagfind_tolerant  # type: ignore[attr-defined]
from urllib.parse import urlsplit

import asyncpg

from activities.lifecycle import Lifecycle
from activities.machines import BURST_REASON, classify_click, classify_open
from activities.store import storable
from activities.tokens import BadToken

MAC_BYTES = 16  # 128 bits
MAX_TOKEN = 1024  # message keys are short; anything longer is not ours, refused before any work
_C0_AND_SPACE = "".join(map(chr, range(0x21)))
_INDEX = re.compile(r"0|[1-9][0-9]{0,5}")  # one spelling per index: "01" or "+1" is a tampered token


# --- tokens ---------------------------------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    """Only the canonical spelling decodes (no padding, no stray characters, no spare low bits)."""
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as err:
        raise BadToken("malformed tracking token") from err
    if _b64(data) != text:
        raise BadToken("non-canonical tracking token")
    return data


def _text(part: str) -> str:
    try:
        return _unb64(part).decode()
    except UnicodeDecodeError as err:
        raise BadToken("malformed tracking token") from err


# --- instrumenting rendered HTML ------------------------------------------------------------------

@dataclass(frozen=True)
class Instrumented:
    html: str
    links: list[str]  # by index: links[i] is where /t/c/{token for i} redirects


class _Scan(HTMLParser):
    """Where the link tags, the last </body> and any pixel of ours are, as (line, column): the
    stdlib tokenizer knows comments, <script>/<style> text and attribute quoting, so a link-like
    string inside them is not taken for a link."""

    def __init__(self, pixel_prefix: str) -> None:
        super().__init__(convert_charrefs=True)
        self.pixel_prefix = pixel_prefix
        self.anchors: list[tuple[tuple[int, int], str]] = []
        self.body_end: tuple[int, int] | None = None
        self.has_pixel = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("a", "area"):
            self.anchors.append((self.getpos(), self.get_starttag_text() or ""))
        elif tag == "img" and not self.has_pixel:
            src = next((value for name, value in attrs if name == "src"), None)
            self.has_pixel = bool(src and src.startswith(self.pixel_prefix))

    def handle_endtag(self, tag: str) -> None:
        if tag == "body":
            self.body_end = self.getpos()


def _href_span(tag_text: str) -> tuple[int, int] | None:
    """Start and end of the first href's value (quotes included) inside a start tag's text,
    found with the very patterns html.parser used to read that tag."""
    match = tagfind_tolerant.match(tag_text, 1)
    position = match.end() if match else len(tag_text)
    while position < len(tag_text) and (attr := attrfind_tolerant.match(tag_text, position)):
        if attr.group(1).lower() == "href":
            return attr.span(3) if attr.group(2) else None
        position = attr.end()
    return None


def _browser_url(raw: str) -> str:
    """What a browser makes of an attribute value: entities decoded, outer C0/space stripped, tabs
    and newlines dropped (WHATWG URL parsing)."""
    unquoted = raw[1:-1] if raw[:1] in ("'", '"') else raw
    return re.sub(r"[\t\n\r]", "", html.unescape(unquoted).strip(_C0_AND_SPACE))


class Tracker:
    """Rewrites rendered HTML for tracking, and reads the tokens back. `base_url`: where this API
    is reached from the recipient's mail client (FOLLOWUPS_PUBLIC_BASE_URL)."""

    def __init__(self, base_url: str, secret: str) -> None:
        self.base = base_url.rstrip("/")
        own = urlsplit(self.base)
        self._own = (own.scheme.lower(), own.netloc.lower(), own.path)
        # A key derived for tracking alone: no tracking token is an unsubscribe token (tokens.py
        # signs with the secret itself), nor the reverse.
        self._key = hmac.digest(secret.encode(), b"followups/tracking/v1", "sha256")

    def _mac(self, purpose: str, key: str, idx: int | None = None) -> bytes:
        return hmac.digest(self._key, f"{purpose}\0{key}\0{'' if idx is None else idx}".encode(), "sha256")[:MAC_BYTES]

    def _check(self, mac: str, purpose: str, key: str, idx: int | None = None) -> None:
        if not hmac.compare_digest(_unb64(mac), self._mac(purpose, key, idx)):
            raise BadToken("tracking token signature does not match")

    def open_url(self, key: str) -> str:
        return f"{self.base}/t/o/{_b64(key.encode())}.{_b64(self._mac('open', key))}"

    def click_url(self, key: str, idx: int) -> str:
        return f"{self.base}/t/c/{_b64(key.encode())}.{idx}.{_b64(self._mac('click', key, idx))}"

    def opened(self, token: str) -> str:
        """The message key an open token names; BadToken for anything this service did not sign."""
        parts = token.split(".") if len(token) <= MAX_TOKEN else []
        if len(parts) != 2:
            raise BadToken("malformed tracking token")
        key = _text(parts[0])
        self._check(parts[1], "open", key)
        return key

    def clicked(self, token: str) -> tuple[str, int]:
        """(message key, link index) a click token names; BadToken otherwise."""
        parts = token.split(".") if len(token) <= MAX_TOKEN else []
        if len(parts) != 3 or not _INDEX.fullmatch(parts[1]):
            raise BadToken("malformed tracking token")
        key, idx = _text(parts[0]), int(parts[1])
        self._check(parts[2], "click", key, idx)
        return key, idx

    def tracked(self, url: str) -> bool:
        """An absolute http(s) link to somewhere else: links into this service (unsubscribe, the
        preference page, our own tracking URLs) keep working as they are."""
        try:
            parts = urlsplit(url)
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False
        scheme, netloc, path = self._own
        own = (parts.scheme, parts.netloc.lower()) == (scheme, netloc) and \
            (not path or parts.path == path or parts.path.startswith(path + "/"))
        return not own

    def instrument(self, document: str, key: str) -> Instrumented:
        """Every tracked `<a href>` (and `<area href>`) becomes a click URL, and an open pixel goes
        before the last `</body>` (or at the end). Every other byte of the document stays as it was;
        a document that already has our pixel gets no second one."""
        scan = _Scan(f"{self.base}/t/o/")
        scan.feed(document)
        scan.close()
        line_starts = [0, *(found.end() for found in re.finditer("\n", document))]
        edits: list[tuple[int, int, str]] = []  # (start, end, replacement), spans of the document
        links: list[str] = []
        for (line, column), tag_text in scan.anchors:
            span = _href_span(tag_text)
            if span is None:
                continue
            raw = tag_text[span[0]:span[1]]
            url = _browser_url(raw)
            if not self.tracked(url):
                continue
            start = line_starts[line - 1] + column + span[0]
            quote = raw[0] if raw[:1] in ("'", '"') else '"'
            edits.append((start, start + len(raw), f"{quote}{html.escape(self.click_url(key, len(links)))}{quote}"))
            links.append(url)
        if not scan.has_pixel:
            at = len(document) if scan.body_end is None else line_starts[scan.body_end[0] - 1] + scan.body_end[1]
            edits.append((at, at, f'<img src="{html.escape(self.open_url(key))}" width=1 height=1 alt="">'))
            edits.sort(key=lambda edit: edit[0])  # a link after </body> (sloppy, but seen) stays in order
        pieces, done = [], 0
        for start, end, replacement in edits:
            pieces += [document[done:start], replacement]
            done = end
        pieces.append(document[done:])
        return Instrumented("".join(pieces), links)


# --- storage ------------------------------------------------------------------------------------

_SAVE = """WITH stale AS (DELETE FROM message_links WHERE key = $1 AND idx >= cardinality($2::text[]))
           INSERT INTO message_links (key, idx, url)
           SELECT $1, (n - 1)::int, url FROM unnest($2::text[]) WITH ORDINALITY AS link(url, n)
           ON CONFLICT (key, idx) DO UPDATE SET url = EXCLUDED.url"""
# The message's send time, the database's clock (that set sent_at), and for a click how many other
# links of the message were clicked in the 2 s before.
_CONTEXT = """SELECT sent_at, clock_timestamp() AS now,
                     (SELECT count(DISTINCT e.detail->>'idx') FROM message_events e
                      WHERE e.key = $1 AND e.kind = 'clicked' AND e.detail->>'idx' <> $2::text
                        AND e.at >= clock_timestamp() - interval '2 seconds') AS others,
                     (SELECT count(*) FROM (SELECT 1 FROM message_events e WHERE e.key = $1 AND e.kind = $3
                                            LIMIT $4) kept) AS kept
              FROM messages WHERE key = $1"""
# Opens (and clicks) of one message kept at most: the figures count messages, not hits, and a
# recipient reloading the pixel in a loop must not grow the table without end.
MAX_EVENTS_PER_MESSAGE = 100
# Every link at once: once two different links have clicks within 2 s of each other, all those
# clicks are the scanner's, the first ones included (they looked human when they came).
_FLAG_BURST = """WITH near AS (SELECT id, machine, detail->>'idx' AS idx FROM message_events
                               WHERE key = $1 AND kind = 'clicked'
                                 AND at BETWEEN $2::timestamptz - interval '2 s' AND $2::timestamptz + interval '2 s')
                 UPDATE message_events SET machine = true, reason = $3
                 WHERE id IN (SELECT id FROM near WHERE NOT machine) AND (SELECT count(DISTINCT idx) FROM near) > 1"""
MAX_AGENT = 512  # characters of a user agent kept


class TrackingStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.lifecycle = Lifecycle(pool)

    async def save_links(self, key: str, links: list[str]) -> None:
        """The links of the message as rendered for this attempt, in one statement; a retry that
        renders again replaces them (and drops any index the new rendering no longer has)."""
        await self.pool.execute(_SAVE, key, storable(links))  # a NUL PostgreSQL refuses becomes U+FFFD

    async def link(self, key: str, idx: int) -> str | None:
        return await self.pool.fetchval("SELECT url FROM message_links WHERE key = $1 AND idx = $2", key, idx)

    async def record_open(self, key: str, *, method: str, user_agent: str | None) -> bool:
        """Keep the open, flagged machine with its reason when it is one. False: no such message."""
        row = await self.pool.fetchrow(_CONTEXT, key, "", "opened", MAX_EVENTS_PER_MESSAGE)
        if row is None:
            return False
        if row["kept"] >= MAX_EVENTS_PER_MESSAGE:
            return True  # seen often enough: the pixel is served, nothing more is stored
        since = None if row["sent_at"] is None else row["now"] - row["sent_at"]
        reason = classify_open(method, user_agent, since)
        return await self.lifecycle.record(kind="opened", key=key, at=row["now"], machine=reason is not None,
                                           reason=reason, detail={"user_agent": (user_agent or "")[:MAX_AGENT]})

    async def record_click(self, key: str, idx: int, url: str, *, method: str, user_agent: str | None) -> bool:
        """Keep the click, flagged machine with its reason when it is one; then, if it makes a burst
        with clicks on other links, flag those too. False: no such message."""
        row = await self.pool.fetchrow(_CONTEXT, key, str(idx), "clicked", MAX_EVENTS_PER_MESSAGE)
        if row is None:
            return False
        if row["kept"] >= MAX_EVENTS_PER_MESSAGE:
            return True  # clicked often enough: the redirect is served, nothing more is stored
        since = None if row["sent_at"] is None else row["now"] - row["sent_at"]
        reason = classify_click(method, user_agent, since, row["others"])
        recorded = await self.lifecycle.record(
            kind="clicked", key=key, at=row["now"], machine=reason is not None, reason=reason,
            detail={"user_agent": (user_agent or "")[:MAX_AGENT], "idx": idx, "url": url})
        flagged = await self.pool.execute(_FLAG_BURST, key, row["now"], BURST_REASON)  # also clicks racing this one
        if flagged != "UPDATE 0":
            await self.lifecycle.reconsider(key)  # the burst's first click had moved it as a person's
        return recorded
