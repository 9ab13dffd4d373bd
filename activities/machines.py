"""Machine opens and clicks (pure): why a pixel fetch or a click was an image proxy's, a security
gateway's or a link scanner's rather than a person's, from its method, user agent and timing
(activities.tracking records them flagged `machine` with the reason)."""

from __future__ import annotations

import re
from datetime import timedelta

from crawlerdetect import CrawlerDetect

BURST = timedelta(seconds=2)  # a person needs longer than this to get a message and click, or to click twice
BURST_REASON = "several links clicked within 2 s"
# Fetchers that never are a person: security gateways that open every link and pixel on arrival,
# and mail providers' image proxies. crawlerdetect knows general bots; these it partly misses.
_MACHINES = [(re.compile(pattern, re.IGNORECASE), reason) for pattern, reason in (
    (r"GoogleImageProxy|ggpht\.com", "image proxy (Gmail)"),
    (r"YahooMailProxy", "image proxy (Yahoo Mail)"),
    (r"proofpoint|ppops-", "security gateway (Proofpoint)"),
    (r"mimecast", "security gateway (Mimecast)"),
    (r"barracuda", "security gateway (Barracuda)"),
    (r"safelinks|Microsoft Office (?:Existence|Protocol) Discovery|Microsoft Defender",
     "security gateway (Microsoft Safe Links)"),
    (r"ironport|fireeye|trellix|trend ?micro|forcepoint|sophos|symantec|messagelabs|zscaler|fortiguard|avanan|check ?point|abnormal ?security",
     "security gateway"),
    (r"HeadlessChrome|PhantomJS|Puppeteer|Playwright|Selenium", "headless browser"),
)]
# Mail clients crawlerdetect calls bots (they fetch pages for previews on the web), but that fetch
# the images of a message when its reader opens it: an open through them is a person's.
_MAIL_CLIENTS = re.compile(r"Microsoft Office/|Microsoft Outlook|MSOffice|Outlook-(?:iOS|Android)|MacOutlook/|"
                           r"Airmail|Canary(?:%20| )Mail|Polymail/|Thunderbird/", re.IGNORECASE)
_BOTS = CrawlerDetect()


def _agent_reason(user_agent: str | None, *, opening: bool) -> str | None:
    agent = (user_agent or "").strip()
    if not agent:
        return "no user agent"
    if agent == "Mozilla/5.0":  # what Apple Mail Privacy Protection's prefetch sends, and no browser does
        return "Apple Mail Privacy Protection" if opening else "bare Mozilla/5.0 user agent"
    for pattern, reason in _MACHINES:
        if pattern.search(agent):
            return reason
    if opening and _MAIL_CLIENTS.search(agent):
        return None
    if _BOTS.is_crawler(agent):  # synchronous: nothing runs between this and reading its match
        return f"bot user agent ({_BOTS.get_matches()})"
    return None


def _timing_reason(since_sent: timedelta | None) -> str | None:
    if since_sent is None:
        return "before the message was recorded sent"  # fetched during the SMTP exchange: a gateway
    if since_sent < BURST:
        return "within 2 s of sending"
    return None


def classify_open(method: str, user_agent: str | None, since_sent: timedelta | None) -> str | None:
    """Why this pixel fetch was a machine's (HEAD, image proxy, Apple MPP, scanner, right on
    arrival), or None when it looks like a person opening the message."""
    if method.upper() == "HEAD":
        return "HEAD request"
    return _agent_reason(user_agent, opening=True) or _timing_reason(since_sent)


def classify_click(method: str, user_agent: str | None, since_sent: timedelta | None,
                   other_links_clicked_within_2s: int) -> str | None:
    """Why this click was a link scanner's (HEAD, scanner user agent, on arrival, every link at
    once), or None when it looks like a person's."""
    if method.upper() == "HEAD":
        return "HEAD request"
    reason = _agent_reason(user_agent, opening=False) or _timing_reason(since_sent)
    if reason is None and other_links_clicked_within_2s > 0:
        return BURST_REASON
    return reason
