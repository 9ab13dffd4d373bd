"""Tracking's pure parts (issue 10, part 3): rewriting rendered HTML (every other byte kept), the
signed tokens (any change refused), and telling a machine's open or click from a person's."""

from __future__ import annotations

import html
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from activities import tokens
from activities.tokens import BadToken
from activities.machines import BURST_REASON, classify_click, classify_open
from activities.tracking import Tracker

BASE = "https://mail.example.com"
KEY = "lead-42/step-2"
tracker = Tracker(BASE + "/", "test-secret")
PIXEL = f'<img src="{tracker.open_url(KEY)}" width=1 height=1 alt="">'

CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/124.0.0.0 Safari/537.36")
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Mobile/15E148")
OUTLOOK = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17328; Pro)"
LATER = timedelta(minutes=5)


# --- instrument -----------------------------------------------------------------------------------

def test_links_are_rewritten_and_the_rest_of_the_document_is_kept():
    doc = ('<!doctype html><html><head><style>a{color:red}</style></head>\n'
           '<body><p>Hi <a href="https://shop.example/a?x=1&amp;y=2" class=btn>go</a>\n'
           "<a class='c' HREF='http://ex.example'>b</a> <a href=https://bare.example/p>c</a>\n"
           '<a href="mailto:ann@example.com">m</a> <a href="tel:+4930123">t</a> <a href="#top">f</a>\n'
           f'<a href="{BASE}/v1/unsubscribe/abc">u</a> <a href="/relative">r</a> <a name=x>n</a>\n'
           '<a href="javascript:alert(1)">j</a> <a href="  https://spaced.example/  ">s</a>\n'
           '</body></html>\n')
    out = tracker.instrument(doc, KEY)
    assert out.links == ["https://shop.example/a?x=1&y=2", "http://ex.example", "https://bare.example/p",
                         "https://spaced.example/"]
    click = [tracker.click_url(KEY, i) for i in range(4)]
    assert out.html == doc.replace('"https://shop.example/a?x=1&amp;y=2"', f'"{click[0]}"') \
        .replace("'http://ex.example'", f"'{click[1]}'").replace("https://bare.example/p", f'"{click[2]}"') \
        .replace('"  https://spaced.example/  "', f'"{click[3]}"').replace("</body>", PIXEL + "</body>")


def test_links_inside_comments_scripts_and_styles_are_not_links():
    doc = ('<body><!-- <a href="https://comment.example/"> --><script>var a = \'<a href="https://js.example/">\';'
           '</script><style>/* <a href="https://css.example/"> */</style><a href="https://real.example/">x</a></body>')
    out = tracker.instrument(doc, KEY)
    assert out.links == ["https://real.example/"]
    assert "comment.example" in out.html and "js.example" in out.html and "css.example" in out.html


def test_entities_are_decoded_as_a_browser_would_before_the_url_is_stored():
    doc = '<a href="&#x68;ttps://e.example/?a=1&amp;b=&quot;2&quot;&#38;c=%20">x</a><a href="ht\ntps://nl.example/">y</a>'
    assert tracker.instrument(doc, KEY).links == ['https://e.example/?a=1&b="2"&c=%20', "https://nl.example/"]


@pytest.mark.parametrize("url, tracked", [
    (f"{BASE}/prefs", False), ("https://MAIL.example.com/x", False), (f"{BASE}", False),
    ("http://mail.example.com/x", True),  # another scheme is another origin
    ("https://mail.example.com.evil.example/", True), ("https://mail.example.com:8443/", True),
    ("https://[broken/", False), ("https:no-host", False), ("ftp://files.example/", False),
])
def test_only_links_out_of_this_service_are_tracked(url: str, tracked: bool):
    assert tracker.tracked(url) is tracked


def test_a_base_with_a_path_owns_only_that_path():
    mounted = Tracker("https://x.example/app", "s")
    assert not mounted.tracked("https://x.example/app/unsubscribe/1") and not mounted.tracked("https://x.example/app")
    assert mounted.tracked("https://x.example/application") and mounted.tracked("https://x.example/")


def test_the_pixel_goes_at_the_end_without_a_body_and_only_once():
    out = tracker.instrument('<p><a href="https://a.example/">a</a></p>', KEY)
    assert out.html.endswith(PIXEL) and out.html.count("/t/o/") == 1
    again = tracker.instrument(out.html, KEY)
    assert again.html == out.html and again.links == []  # our own links and pixel are left alone


def test_a_link_after_the_body_keeps_the_document_in_order():
    doc = '<body>a</body><a href="https://late.example/">late</a>'
    out = tracker.instrument(doc, KEY)
    assert out.html == f'<body>a{PIXEL}</body><a href="{tracker.click_url(KEY, 0)}">late</a>'


def test_the_last_body_end_tag_takes_the_pixel_and_an_empty_document_still_gets_one():
    assert tracker.instrument("<body>1</body><body>2</body>", KEY).html == f"<body>1</body><body>2{PIXEL}</body>"
    assert tracker.instrument("", KEY).html == PIXEL


def test_an_href_without_a_value_or_a_second_href_changes_nothing_else():
    out = tracker.instrument('<a href>x</a><a href="https://one.example/" href="https://two.example/">y</a>', KEY)
    assert out.links == ["https://one.example/"]  # the first href is the one browsers follow
    assert out.html.startswith('<a href>x</a><a href="') and 'href="https://two.example/"' in out.html


TEXT = st.text(alphabet="ab é\r\n\t>\"'=/;:", max_size=12)
ENTITY = st.sampled_from(["&amp;", "&lt;", "&gt;", "&quot;", "&#39;", "&eacute;", "&nbsp;"])
URLS = st.sampled_from(["https://shop.example/p?a=1&b=2", "http://plain.example", "https://x.example/#frag",
                        f"{BASE}/v1/unsubscribe/t", "mailto:a@example.com", "tel:+1555", "#top", "/rel",
                        "javascript:void(0)", "https://ü.example/ä?q=\"x\"", ""])
OTHER = st.sampled_from(['<p class="x">', "</p>", "<td style='a:b'>", "</td>", "<br/>", "<hr>",
                         '<img src="https://img.example/x.png" alt="">', "<!-- <a href='https://c.example/'> -->",
                         "<script>x='<a href=\"https://s.example/\">'</script>", "<!doctype html>"])


@st.composite
def documents(draw) -> tuple[str, str]:
    """A document and the exact text instrument() must make of it."""
    source, expected, links = [], [], 0
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["text", "entity", "other", "link"]))
        if kind == "link":
            url = draw(URLS)
            quote = draw(st.sampled_from(['"', "'"] + ([""] if url and not set(url) & set(" '\"=<>`") else [])))
            raw = html.escape(url, quote=True) if quote else url
            before, after = draw(st.sampled_from([("<a ", ">"), ('<a class="c" ', ' target="_blank">'),
                                                  ("<A ", " />"), ("<area alt='' ", ">")]))
            name = draw(st.sampled_from(["href", "HREF"]))
            source.append(f"{before}{name}={quote}{raw}{quote}{after}")
            if tracker.tracked(url):
                q = quote or '"'
                raw, links = f"{q}{tracker.click_url(KEY, links)}{q}", links + 1
            else:
                raw = f"{quote}{raw}{quote}"
            expected.append(f"{before}{name}={raw}{after}")
        else:
            piece = draw({"text": TEXT, "entity": ENTITY, "other": OTHER}[kind])
            source.append(piece)
            expected.append(piece)
    if draw(st.booleans()):
        return "<body>" + "".join(source) + "</body>\n", "<body>" + "".join(expected) + PIXEL + "</body>\n"
    return "".join(source), "".join(expected) + PIXEL


@settings(max_examples=300, deadline=None)
@given(documents())
def test_instrument_changes_exactly_the_tracked_hrefs_and_adds_one_pixel(case: tuple[str, str]):
    source, expected = case
    assert tracker.instrument(source, KEY).html == expected


# --- tokens ---------------------------------------------------------------------------------------

def _token(url: str) -> str:
    return url.rsplit("/", 1)[1]


def test_tokens_name_their_message_and_link():
    assert tracker.clicked(_token(tracker.click_url(KEY, 7))) == (KEY, 7)
    assert tracker.opened(_token(tracker.open_url(KEY))) == KEY
    unicode_key = "onboarding-ü/step 1"
    assert tracker.clicked(_token(tracker.click_url(unicode_key, 0))) == (unicode_key, 0)


ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ %"


@pytest.mark.parametrize("kind", ["click", "open"])
def test_every_change_to_any_character_of_a_token_is_refused(kind: str):
    token = _token(tracker.click_url(KEY, 3) if kind == "click" else tracker.open_url(KEY))
    read = tracker.clicked if kind == "click" else tracker.opened
    tampered = {token[:i] + c + token[i + 1:] for i in range(len(token)) for c in ALPHABET} - {token}
    tampered |= {token[:i] for i in range(len(token))} | {token + c for c in ALPHABET}
    tampered |= {token[:i] + token[i + 1:] for i in range(len(token))} | {token + "==", token.replace(".", "..")}
    for changed in tampered:
        with pytest.raises(BadToken):
            read(changed)


def test_an_index_spelled_another_way_is_refused():
    token = _token(tracker.click_url(KEY, 3))
    key_part, _, mac_part = token.split(".")
    for spelling in ("03", "+3", " 3", "3.0", "-3", "٣"):
        with pytest.raises(BadToken):
            tracker.clicked(f"{key_part}.{spelling}.{mac_part}")


def test_tokens_are_separated_by_purpose_and_secret():
    click, opened = _token(tracker.click_url(KEY, 0)), _token(tracker.open_url(KEY))
    key_part, _, mac_part = click.split(".")
    with pytest.raises(BadToken):
        tracker.opened(f"{key_part}.{mac_part}")  # a click's MAC is no open's
    with pytest.raises(BadToken):
        tracker.clicked(f"{opened.split('.')[0]}.0.{opened.split('.')[1]}")
    with pytest.raises(BadToken):
        Tracker(BASE, "another-secret").clicked(click)
    unsubscribe = tokens.sign("test-secret", "ann@example.com", KEY)
    for read in (tracker.clicked, tracker.opened):
        with pytest.raises(BadToken):
            read(unsubscribe)
    for ours in (click, opened):
        with pytest.raises(BadToken):
            tokens.verify("test-secret", ours)


@given(st.text(max_size=200))
def test_no_text_is_a_token_by_accident(text: str):
    for read in (tracker.clicked, tracker.opened):
        with pytest.raises(BadToken):
            read(text)


def test_an_oversized_token_is_refused_before_any_work():
    with pytest.raises(BadToken):
        tracker.opened("A" * 100_000 + ".x")


# --- machine or person ----------------------------------------------------------------------------

@pytest.mark.parametrize("agent, reason", [
    ("Mozilla/5.0", "Apple Mail Privacy Protection"),
    ("Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)", "image proxy (Gmail)"),
    ("YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html", "image proxy (Yahoo Mail)"),
    ("Barracuda Sentinel (EE)", "security gateway (Barracuda)"),
    ("Mozilla/5.0 (compatible; Mimecast URL Protect)", "security gateway (Mimecast)"),
    ("Proofpoint URL Defense", "security gateway (Proofpoint)"),
    ("Microsoft Office Existence Discovery", "security gateway (Microsoft Safe Links)"),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
     "headless browser"),
    ("python-requests/2.31.0", "bot user agent (python-requests)"),
    ("curl/8.5.0", "bot user agent (curl)"),
    ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", "bot user agent (bingbot)"),
    ("", "no user agent"), (None, "no user agent"),
])
def test_machine_user_agents_are_named(agent: str | None, reason: str):
    assert classify_open("GET", agent, LATER) == reason


@pytest.mark.parametrize("agent", [CHROME, IPHONE, OUTLOOK, "Outlook-iOS/709.2226530.prod.iphone (3.24.1)",
                                   "Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.9.0",
                                   "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"])
def test_people_opening_in_browsers_and_mail_clients_are_people(agent: str):
    assert classify_open("GET", agent, LATER) is None


def test_a_mail_client_fetching_a_link_itself_is_a_preview_not_a_click():
    assert classify_click("GET", OUTLOOK, LATER, 0) == "bot user agent (Microsoft Office)"
    assert classify_click("GET", "Mozilla/5.0", LATER, 0) == "bare Mozilla/5.0 user agent"


def test_head_requests_are_machines_whoever_they_claim_to_be():
    assert classify_open("HEAD", IPHONE, LATER) == "HEAD request"
    assert classify_click("head", CHROME, LATER, 0) == "HEAD request"


@pytest.mark.parametrize("since, reason", [
    (timedelta(seconds=0.5), "within 2 s of sending"), (timedelta(seconds=-3), "within 2 s of sending"),
    (None, "before the message was recorded sent"), (timedelta(seconds=2), None), (timedelta(days=30), None),
])
def test_fetches_on_arrival_are_machines(since: timedelta | None, reason: str | None):
    assert classify_click("GET", CHROME, since, 0) == reason
    assert classify_open("GET", IPHONE, since) == reason


def test_several_links_at_once_are_a_scanner():
    assert classify_click("GET", CHROME, LATER, 1) == BURST_REASON
    assert classify_click("GET", CHROME, LATER, 0) is None
    assert classify_click("HEAD", CHROME, LATER, 3) == "HEAD request"  # the first reason found is kept
