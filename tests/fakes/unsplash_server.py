"""An Unsplash API server on loopback: photo search and download tracking, for ``httpx`` clients.

Results are derived from the query alone (ids, sizes, colours, authors), so a test can search
twice and get the same photos without storing fixtures. Image and page URLs point back at this
server and are never fetched; only ``links.download_location`` is, as the API guidelines
require when a photo is used.

The hourly quota is modelled as a plain counter, ``remaining``, because the failure worth testing
is what happens at zero: Unsplash then answers 403 with a plain-text body, not JSON.
"""

from __future__ import annotations

import base64
import hashlib
import math
import threading
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlencode

from tests.fakes import FaultQueue, Incoming, LoopbackServer, Reply

__all__ = ["DownloadCall", "FakeUnsplash", "SearchCall", "UnsplashFault"]

DEFAULT_PER_PAGE = 10
MAX_PER_PAGE = 30
ORIENTATIONS = ("landscape", "portrait", "squarish")
CONTENT_FILTERS = ("low", "high")
RATE_LIMIT_TEXT = "Rate Limit Exceeded"
SERVER_ERROR_HTML = (
    "<!DOCTYPE html><html><head><title>Internal Server Error</title></head>"
    "<body><h1>Internal Server Error</h1></body></html>"
)
_BASE83 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~"
_SURFACES = ("a wooden table", "a white plate", "a rustic board", "a marble counter")
_PHOTOGRAPHERS = ("Ana Lima", "Kenji Sato", "Maya Okafor", "Lars Berg", "Sofia Rossi")


class UnsplashFault(StrEnum):
    """Misbehaviour served to the next API requests, queued with ``FakeUnsplash.inject``.

    - ``rate_limit_429``: 429 with a JSON ``errors`` body.
    - ``rate_limit_403``: 403 with the plain-text body ``Rate Limit Exceeded``.
    - ``server_error``: 500 with an HTML body, as a proxy in front of the API would send.
    - ``hang``: silence for ``hang_seconds``, then a normal answer.
    """

    rate_limit_429 = "rate_limit_429"
    rate_limit_403 = "rate_limit_403"
    server_error = "server_error"
    hang = "hang"


@dataclass(frozen=True)
class SearchCall:
    """One ``/search/photos`` request as received, whatever its outcome."""

    params: dict[str, str]
    headers: dict[str, str]

    @property
    def query(self) -> str | None:
        return self.params.get("query")


DownloadCall = tuple[str, dict[str, str]]


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("\x00".join(map(str, parts)).encode()).digest()


def _base83(value: int, length: int) -> str:
    return "".join(_BASE83[value // 83 ** (length - 1 - i) % 83] for i in range(length))


def _blur_hash(digest: bytes, color: str) -> str:
    """A decodable 4x3 BlurHash whose average colour is ``color``, so decoders accept it."""
    size_flag = (4 - 1) + (3 - 1) * 9
    ac = [int.from_bytes(digest[i : i + 2], "big") % 19**3 for i in range(0, 22, 2)]
    return (
        _base83(size_flag, 1)
        + _base83(digest[22] % 83, 1)
        + _base83(int(color[1:], 16), 4)
        + "".join(_base83(value, 2) for value in ac)
    )


def _size(digest: bytes, orientation: str | None) -> tuple[int, int]:
    long_side = 3000 + int.from_bytes(digest[23:25], "big") % 3000
    short_side = long_side * 2 // 3
    if orientation == "portrait":
        return short_side, long_side
    if orientation == "squarish":
        return long_side, long_side
    return long_side, short_side


class FakeUnsplash(LoopbackServer):
    """``/search/photos`` and ``/photos/<id>/download`` under ``base_url``.

    Attributes may be changed while the server runs (``fake.remaining = 3``). ``searches``
    records every search request, ``downloads`` every acknowledged download as
    ``(photo_id, query params)``; ``no_results`` holds lower-case queries that find nothing.
    """

    def __init__(self, *, access_key: str = "unsplash-test-key", rate_limit: int = 50) -> None:
        super().__init__()
        self.access_key = access_key
        self.rate_limit = rate_limit
        self.remaining = rate_limit
        self.hang_seconds = 30.0
        self.no_results: set[str] = set()
        self.searches: list[SearchCall] = []
        self.downloads: list[DownloadCall] = []
        self._faults: FaultQueue[UnsplashFault] = FaultQueue()
        self._issued: set[str] = set()
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return self.origin

    def inject(self, fault: UnsplashFault | str, times: int = 1) -> None:
        """Serve ``fault`` to the next ``times`` authorised requests, after any already queued."""
        self._faults.push(UnsplashFault(fault), times)

    @property
    def pending_faults(self) -> list[UnsplashFault]:
        return self._faults.pending()

    def clear_faults(self) -> None:
        self._faults.clear()

    def handle(self, request: Incoming) -> Reply | None:
        if request.path == "/search/photos":
            self.searches.append(SearchCall(dict(request.query), dict(request.headers)))
        if request.headers.get("authorization") != f"Client-ID {self.access_key}":
            return self._with_quota(
                Reply.json(401, {"errors": ["OAuth error: The access token is invalid"]})
            )
        with self._lock:
            exhausted = self.remaining <= 0
            if not exhausted:
                self.remaining -= 1
        if exhausted:
            return self._with_quota(Reply.text(403, RATE_LIMIT_TEXT))

        fault = self._faults.pop()
        if fault is UnsplashFault.rate_limit_429:
            return self._with_quota(Reply.json(429, {"errors": [RATE_LIMIT_TEXT]}), remaining=0)
        if fault is UnsplashFault.rate_limit_403:
            return self._with_quota(Reply.text(403, RATE_LIMIT_TEXT), remaining=0)
        if fault is UnsplashFault.server_error:
            return self._with_quota(Reply.text(500, SERVER_ERROR_HTML, "text/html"))
        if fault is UnsplashFault.hang and not self.pause(self.hang_seconds):
            return None
        return self._with_quota(self._route(request))

    def _with_quota(self, reply: Reply, remaining: int | None = None) -> Reply:
        reply.headers["X-Ratelimit-Limit"] = str(self.rate_limit)
        reply.headers["X-Ratelimit-Remaining"] = str(
            max(self.remaining if remaining is None else remaining, 0)
        )
        return reply

    def _route(self, request: Incoming) -> Reply:
        parts = request.path.strip("/").split("/")
        if request.method == "GET" and request.path == "/search/photos":
            return self._search(request.query)
        if request.method == "GET" and len(parts) == 3 and parts[::2] == ["photos", "download"]:
            return self._download(parts[1], request.query)
        return Reply.json(404, {"errors": ["Not found"]})

    def _search(self, params: dict[str, str]) -> Reply:
        query = params.get("query", "").strip()
        orientation = params.get("orientation") or None
        if not query:
            return Reply.json(400, {"errors": ["query is missing"]})
        if orientation is not None and orientation not in ORIENTATIONS:
            return Reply.json(400, {"errors": ["orientation is invalid"]})
        if params.get("content_filter", "low") not in CONTENT_FILTERS:
            return Reply.json(400, {"errors": ["content_filter is invalid"]})
        try:
            per_page = min(max(int(params.get("per_page", DEFAULT_PER_PAGE)), 1), MAX_PER_PAGE)
            page = max(int(params.get("page", 1)), 1)
        except ValueError:
            return Reply.json(400, {"errors": ["per_page and page must be integers"]})

        if query.lower() in self.no_results:
            total = 0
        else:
            total = 40 + int.from_bytes(_digest(query.lower())[:2], "big") % 360
        first = (page - 1) * per_page
        ranks = range(first, min(first + per_page, total))
        results = [self._photo(query, rank, orientation) for rank in ranks]
        with self._lock:
            self._issued.update(photo["id"] for photo in results)
        return Reply.json(
            200,
            {"total": total, "total_pages": math.ceil(total / per_page), "results": results},
        )

    def _photo(self, query: str, rank: int, orientation: str | None) -> dict[str, Any]:
        digest = _digest(query.lower(), rank)
        photo_id = base64.urlsafe_b64encode(digest[:8]).decode()[:11]
        ixid = base64.urlsafe_b64encode(f"fake|search|{rank}|{query}".encode()).decode()
        ixid = ixid.rstrip("=")
        color = "#" + digest[25:28].hex()
        width, height = _size(digest, orientation)
        name = _PHOTOGRAPHERS[digest[28] % len(_PHOTOGRAPHERS)]
        username = f"{name.split()[0].lower()}_{digest[29:31].hex()}"
        base = self.base_url
        raw = f"{base}/images/{photo_id}.jpg?ixid={ixid}&ixlib=rb-4.0.3"
        return {
            "id": photo_id,
            "slug": f"{query.lower().replace(' ', '-')}-{photo_id}",
            "width": width,
            "height": height,
            "color": color,
            "blur_hash": _blur_hash(digest, color),
            "description": f"Freshly made {query}, photographed from above",
            "alt_description": f"{query} on {_SURFACES[rank % len(_SURFACES)]}",
            "urls": {
                "raw": raw,
                "full": f"{raw}&q=85&fm=jpg&crop=entropy&cs=srgb",
                "regular": f"{raw}&q=80&fm=jpg&fit=max&w=1080",
                "small": f"{raw}&q=80&fm=jpg&fit=max&w=400",
                "thumb": f"{raw}&q=80&fm=jpg&fit=max&w=200",
            },
            "links": {
                "self": f"{base}/photos/{photo_id}",
                "html": f"{base}/site/photos/{photo_id}",
                "download": f"{base}/site/photos/{photo_id}/download?ixid={ixid}",
                "download_location": f"{base}/photos/{photo_id}/download?ixid={ixid}",
            },
            "user": {
                "id": base64.urlsafe_b64encode(digest[8:17]).decode(),
                "username": username,
                "name": name,
                "links": {"html": f"{base}/site/@{username}"},
            },
        }

    def _download(self, photo_id: str, params: dict[str, str]) -> Reply:
        with self._lock:
            known = photo_id in self._issued
        if not known:
            return Reply.json(404, {"errors": ["Couldn't find Photo"]})
        self.downloads.append((photo_id, dict(params)))
        query = urlencode({"ixid": params["ixid"], "fm": "jpg"} if "ixid" in params else {})
        return Reply.json(200, {"url": f"{self.base_url}/images/{photo_id}.jpg?{query}"})
