"""A YouTube Data API v3 stand-in for the adapter tests: resumable sessions, videos, lists.

It answers with the documented shapes of tests/fixtures/youtube (see SOURCE.txt there) and
keeps state, so a test can count the videos made and see every Content-Range sent. The same
object answers an ``httpx.MockTransport`` (``handler``) and a real local HTTP server
(``serve``), the latter for the test that kills a publishing process with SIGKILL.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "youtube"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


Answer = tuple[int, dict[str, str], bytes]


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Answer:
    return (
        status,
        {"Content-Type": "application/json; charset=UTF-8", **(headers or {})},
        (json.dumps(body).encode()),
    )


class FakeYouTube:
    """The network's state and its answers. ``base`` is where it is reached."""

    def __init__(self, base: str = "https://www.googleapis.com") -> None:
        self.base = base
        self.sessions: dict[str, dict[str, Any]] = {}
        self.videos: dict[str, dict[str, Any]] = {}
        self.inits: list[dict[str, Any]] = []  # (params, headers, resource) of session POSTs
        self.ranges: list[str] = []  # Content-Range of every PUT, in order
        self.thumbnails: dict[str, bytes] = {}
        self.processing = ["processing", "processed"]
        self.requests: list[tuple[str, str]] = []
        #: Called with (method, path, headers) before answering; may return an answer.
        self.intercept: Callable[[str, str, dict[str, str], bytes], Answer | None] | None = None
        self.lock = threading.Lock()
        #: The access token the fake accepts; ``/token`` (Google's refresh) issues ``renewed``.
        self.token = "ya29.secret-youtube-token"
        self.renewed = "ya29.renewed-youtube-token"
        self.refreshes: list[dict[str, str]] = []
        #: The commentThread resources sent to commentThreads.insert.
        self.comments: list[dict[str, Any]] = []
        #: What videos.list part=snippet,status says of a video's upload (its liveness).
        self.upload_status = ["processed"]

    # -- the one entry point ----------------------------------------------------------------

    def respond(self, method: str, url: str, headers: dict[str, str], body: bytes) -> Answer:
        parts = urlsplit(url)
        path, query = parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}
        with self.lock:
            self.requests.append((method, path))
            if self.intercept is not None:
                answer = self.intercept(method, path, headers, body)
                if answer is not None:
                    return answer
            if method == "POST" and path == "/token":
                # https://developers.google.com/identity/protocols/oauth2/web-server#offline
                self.refreshes.append({k: v[0] for k, v in parse_qs(body.decode()).items()})
                self.token = self.renewed
                answer = {"access_token": self.renewed, "expires_in": 3599, "token_type": "Bearer"}
                return _json(200, answer)
            if headers.get("authorization") != f"Bearer {self.token}":
                error = fixture("errors.json")["authError"]
                return _json(error["status"], error["body"])
            if method == "POST" and path == "/upload/youtube/v3/videos":
                return self._open(query, headers, body)
            if method == "PUT" and path.startswith("/upload/session/"):
                return self._put(path, headers, body)
            if method == "POST" and path == "/upload/youtube/v3/thumbnails/set":
                self.thumbnails[query["videoId"]] = body
                return _json(200, {"kind": "youtube#thumbnailSetResponse", "items": []})
            if method == "GET" and path == "/youtube/v3/videos":
                return self._videos(query)
            if method == "POST" and path == "/youtube/v3/commentThreads":
                return self._comment(query, body)
            if method == "GET" and path == "/youtube/v3/channels":
                name = "channels_statistics.json"
                if query.get("part") == "contentDetails":
                    name = "channels_content_details.json"
                return _json(200, fixture(name))
            if method == "GET" and path == "/youtube/v3/playlistItems":
                return _json(200, self._uploads())
        return _json(404, {"error": {"code": 404, "message": "Not Found"}})

    def _open(self, query: dict[str, str], headers: dict[str, str], body: bytes) -> Answer:
        uri = f"{self.base}/upload/session/{len(self.sessions) + 1}"
        self.inits.append({"query": query, "headers": headers, "resource": json.loads(body)})
        self.sessions[uri] = {
            "size": int(headers["x-upload-content-length"]),
            "data": bytearray(),
            "resource": json.loads(body),
            "video": None,
        }
        return 200, {"Location": uri}, b""

    def _put(self, path: str, headers: dict[str, str], body: bytes) -> Answer:
        session = self.sessions.get(f"{self.base}{path}")
        if session is None:
            return _json(404, {"error": {"code": 404, "message": "Not Found"}})
        content_range = headers["content-range"]
        self.ranges.append(content_range)
        if session["video"] is None and not content_range.startswith("bytes */"):
            first = int(content_range.split()[1].split("-")[0])
            if first != len(session["data"]):
                return _json(400, {"error": {"code": 400, "message": "Bad Content-Range"}})
            session["data"] += body
        if session["video"] is None and len(session["data"]) == session["size"]:
            session["video"] = self._make_video(session["resource"])
        if session["video"] is not None:
            return _json(201, self.videos[session["video"]])
        received = len(session["data"])
        return 308, ({"Range": f"bytes=0-{received - 1}"} if received else {}), b""

    def _make_video(self, resource: dict[str, Any]) -> str:
        video = fixture("video_resource.json")
        video_id = f"vid{len(self.videos) + 1:08d}"
        video["id"] = video_id
        video["snippet"].update(resource["snippet"])
        video["status"].update(resource["status"])
        self.videos[video_id] = video
        return video_id

    def _comment(self, query: dict[str, str], body: bytes) -> Answer:
        resource = json.loads(body)
        self.comments.append(resource)
        snippet = resource["snippet"]
        if query.get("part") != "snippet" or snippet.get("videoId") not in self.videos:
            return _json(404, {"error": {"code": 404, "message": "Video not found"}})
        thread = fixture("comment_thread.json")
        thread_id = f"Ugz{len(self.comments):06d}AaABAg"
        thread["id"] = thread["snippet"]["topLevelComment"]["id"] = thread_id
        thread["snippet"]["videoId"] = snippet["videoId"]
        thread["snippet"]["channelId"] = snippet["channelId"]
        text = snippet["topLevelComment"]["snippet"]["textOriginal"]
        thread["snippet"]["topLevelComment"]["snippet"].update(
            videoId=snippet["videoId"], textOriginal=text, textDisplay=text
        )
        return _json(200, thread)

    def _videos(self, query: dict[str, str]) -> Answer:
        if query["part"] == "snippet,status":
            video = self.videos.get(query["id"])
            if video is None:
                return _json(200, {"kind": "youtube#videoListResponse", "items": []})
            state = self.upload_status.pop(0) if len(self.upload_status) > 1 else None
            item = copy.deepcopy(video)
            item["status"]["uploadStatus"] = state or self.upload_status[0]
            return _json(200, {"kind": "youtube#videoListResponse", "items": [item]})
        if query["part"] == "status,processingDetails":
            state = self.processing.pop(0) if len(self.processing) > 1 else self.processing[0]
            body = copy.deepcopy(fixture("videos_processing.json")[state])
            body["items"][0]["id"] = query["id"]
            return _json(200, body)
        stats = fixture("videos_statistics.json")
        ids = query["id"].split(",")
        items = [i for i in stats["items"] if i["id"] in ids]
        for video_id in ids:
            if video_id in self.videos:
                items.append({"id": video_id, "statistics": stats["items"][0]["statistics"]})
        return _json(200, {**stats, "items": items})

    def _uploads(self) -> dict[str, Any]:
        listing = fixture("playlist_items.json")
        for video_id, video in self.videos.items():
            snippet = {
                "publishedAt": video["snippet"]["publishedAt"],
                "title": video["snippet"]["title"],
                "resourceId": {"kind": "youtube#video", "videoId": video_id},
            }
            listing["items"].insert(0, {"kind": "youtube#playlistItem", "snippet": snippet})
        return listing

    # -- transports --------------------------------------------------------------------------

    def handler(self, request: httpx.Request) -> httpx.Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        status, out, body = self.respond(request.method, str(request.url), headers, request.read())
        return httpx.Response(status, headers=out, content=body)

    @contextmanager
    def serve(self) -> Iterator[str]:
        """Run on a local HTTP server; yields its base URL (sessions point back to it)."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                url = f"{fake.base}{self.path}"
                status, out, content = fake.respond(self.command, url, headers, body)
                self.send_response(status)
                for name, value in {**out, "Content-Length": str(len(content))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self.base = f"http://127.0.0.1:{server.server_address[1]}"
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self.base
        finally:
            server.shutdown()
            server.server_close()
