"""A local stand-in for the OpenAI API subset the `openai` provider uses, for tests.

`POST /v1/chat/completions` answers the provider's JSON tasks (the user message is JSON with a
`task` field) deterministically and validly, so a whole pipeline run completes against it;
`POST /v1/images/generations` renders PNGs (as b64_json or as a URL served at `/files/`).
Faults can be queued per path for the next N requests, every request is recorded, and the
peak number of requests in flight is tracked, so tests can check retries, timing and limits.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from PIL import Image, ImageDraw

CHAT = "/v1/chat/completions"
IMAGES = "/v1/images/generations"
FaultKind = Literal["rate_limit", "server_error", "slow", "malformed", "policy", "chat_refusal"]
FILLER = ("Practical experience shows that small, steady habits matter more than expensive gear or perfect plans, "
          "so start simple, measure what changes, and adjust one thing at a time while you learn what works.")


@dataclass(frozen=True)
class Fault:
    """What to do instead of a normal answer: `retry_after` for 429, `delay` seconds for `slow`."""

    kind: FaultKind
    retry_after: str = "1"
    delay: float = 0.0


@dataclass(frozen=True)
class Recorded:
    path: str
    at: float  # time.monotonic() when the request arrived
    body: dict[str, Any]


@dataclass
class StubState:
    """Shared by the handler threads; guarded by `lock`."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    faults: dict[str, deque[Fault]] = field(default_factory=lambda: defaultdict(deque))
    requests: list[Recorded] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    delay: float = 0.0
    image_mode: Literal["b64", "url"] = "b64"
    image_format: Literal["PNG", "JPEG"] = "PNG"
    in_flight: int = 0
    max_in_flight: int = 0


class OpenAIStub:
    """`with OpenAIStub() as stub:` serves on 127.0.0.1 at `stub.base_url` from a daemon thread."""

    def __init__(self) -> None:
        self.state = StubState()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.state))
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> OpenAIStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def inject(self, path: str, fault: Fault, count: int = 1) -> None:
        """The next `count` requests to `path` get `fault`."""
        with self.state.lock:
            self.state.faults[path].extend([fault] * count)

    def reset(self, drain_seconds: float = 5.0) -> None:
        """Forget faults, requests and settings between tests, once requests a client gave up on are done."""
        deadline = time.monotonic() + drain_seconds
        while self.state.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        with self.state.lock:
            self.state.faults.clear()
            self.state.requests.clear()
            self.state.delay, self.state.image_mode, self.state.image_format = 0.0, "b64", "PNG"
            self.state.max_in_flight = 0

    def requests(self, path: str) -> list[Recorded]:
        with self.state.lock:
            return [r for r in self.state.requests if r.path == path]


def _handler(state: StubState) -> type[BaseHTTPRequestHandler]:
    """A handler class bound to `state`."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: tests read `requests` instead."""

        def do_GET(self) -> None:
            name = self.path.removeprefix("/files/")
            with state.lock:
                data = state.files.get(name)
            if data is None:
                self._send(404, {"error": {"message": "no such file", "code": None}})
            else:
                self._send_bytes(200, data, "image/png" if data.startswith(b"\x89PNG") else "image/jpeg")

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            with state.lock:
                state.requests.append(Recorded(self.path, time.monotonic(), body))
                queue = state.faults.get(self.path)
                fault = queue.popleft() if queue else None
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
                delay = state.delay
            try:
                time.sleep(delay)
                self._answer(body, fault)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out and left
            finally:
                with state.lock:
                    state.in_flight -= 1

        def _answer(self, body: dict[str, Any], fault: Fault | None) -> None:
            if fault is not None and fault.kind == "slow":
                time.sleep(fault.delay)
            if fault is not None and fault.kind in ("rate_limit", "server_error", "policy"):
                self._send_fault(fault)
            elif self.path == CHAT:
                self._send(200, chat_completion(body, fault))
            elif self.path == IMAGES:
                self._send(200, self._images(body))
            else:
                self._send(404, {"error": {"message": f"unknown path {self.path}", "code": None}})

        def _send_fault(self, fault: Fault) -> None:
            if fault.kind == "rate_limit":
                self._send(429, {"error": {"message": "Rate limit reached", "type": "requests",
                                           "code": "rate_limit_exceeded"}}, {"Retry-After": fault.retry_after})
            elif fault.kind == "server_error":
                self._send(500, {"error": {"message": "The server had an error", "type": "server_error",
                                           "code": None}})
            else:
                self._send(400, {"error": {"message": "Your request was rejected by the safety system",
                                           "type": "invalid_request_error", "code": "content_policy_violation"}})

        def _images(self, body: dict[str, Any]) -> dict[str, Any]:
            width, height = (int(v) for v in str(body.get("size", "256x256")).split("x"))
            with state.lock:
                mode, fmt = state.image_mode, state.image_format
            data = render(body.get("prompt", ""), width, height, fmt)
            if mode == "b64":
                return {"created": int(time.time()), "data": [{"b64_json": base64.b64encode(data).decode()}]}
            with state.lock:
                name = f"{len(state.files)}.{fmt.lower()}"
                state.files[name] = data
            host, port = self.server.server_address[:2]
            return {"created": int(time.time()), "data": [{"url": f"http://{host}:{port}/files/{name}"}]}

        def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            self._send_bytes(status, json.dumps(payload).encode(), "application/json", headers)

        def _send_bytes(self, status: int, data: bytes, content_type: str,
                        headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler


# --- answers ---------------------------------------------------------------------------------------------------


def chat_completion(body: dict[str, Any], fault: Fault | None) -> dict[str, Any]:
    """A chat.completion whose content is the task's JSON (or garbage / a refusal, when told)."""
    refusal = None
    if fault is not None and fault.kind == "malformed":
        content: str | None = '{"clusters": [ {"name": "unterminated'
    elif fault is not None and fault.kind == "chat_refusal":
        content, refusal = None, "I can't help with that request."
    else:
        request = json.loads(body["messages"][-1]["content"])
        content = json.dumps(TASKS[request["task"]](request))
    return {"id": "chatcmpl-stub", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "stub"),
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": content, "refusal": refusal}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}}


def cluster_keywords(request: dict[str, Any]) -> dict[str, Any]:
    """Keywords grouped by first word; a group joins the existing cluster named after that word."""
    existing = {c["name"].split()[0].casefold(): c["id"] for c in request["existing_clusters"] if c["name"]}
    groups: dict[str, list[int]] = defaultdict(list)
    for keyword in request["keywords"]:
        groups[keyword["text"].split()[0].casefold()].append(keyword["id"])
    return {"clusters": [{"name": f"{head.title()} topics", "description": f"Everything about {head}.",
                          "keyword_ids": ids, "existing_id": existing.get(head)} for head, ids in groups.items()]}


def generate_ideas(request: dict[str, Any]) -> dict[str, Any]:
    """An untaken idea per keyword (at most three), each targeting its keyword, with six H2 sections of two
    H3s each."""
    name = request["cluster"]["name"]
    taken = {t.casefold() for t in request["taken_titles"]}
    keywords = request["cluster"]["keywords"] or [name]
    ideas: list[dict[str, Any]] = []
    number = 1
    while len(ideas) < min(3, len(keywords)):
        title = f"The complete {name} guide, part {number}"
        number += 1
        if title.casefold() in taken:
            continue
        outline = [{"h2": f"{name} essentials {s}", "h3s": [f"Step {s}.{h}" for h in (1, 2)]} for s in range(1, 7)]
        ideas.append({"title": title, "content_type": "guide", "primary_keyword": keywords[len(ideas)],
                      "target_keywords": keywords[:3], "outline": outline,
                      "description": f"A practical guide to {name.lower()} for beginners."})
    return {"ideas": ideas}


def generate_content(request: dict[str, Any]) -> dict[str, Any]:
    """About 2,500 words of markdown following the outline; meta_title deliberately may run long."""
    idea = request["idea"]
    parts = [f"# {idea['title']}", FILLER, FILLER]
    for section in idea["outline"]:
        parts += [f"## {section['h2']}", FILLER, FILLER, FILLER]
        for h3 in section["h3s"]:
            parts += [f"### {h3}", FILLER, FILLER, FILLER]
        parts.append("\n".join(f"- {FILLER[:60].strip()} ({n})" for n in range(1, 4)))
    parts += ["## Conclusion", FILLER, FILLER]
    return {"title": idea["title"], "meta_title": idea["title"], "meta_description": idea["description"],
            "slug": idea["title"].lower().replace(" ", "-"), "markdown": "\n\n".join(parts)}


def generate_image_prompts(request: dict[str, Any]) -> dict[str, Any]:
    """A featured prompt and four section prompts."""
    return {"featured": f"A flat vector illustration of {request['title']}, warm colours, no text.",
            "in_article": [{"section": s, "prompt": f"An isometric illustration of {s}, soft light, no text."}
                           for s in request["sections"][:4]]}


TASKS = {"cluster_keywords": cluster_keywords, "generate_ideas": generate_ideas,
         "generate_content": generate_content, "generate_image_prompts": generate_image_prompts}


def render(prompt: str, width: int, height: int, fmt: str) -> bytes:
    """A small deterministic picture whose colour depends on the prompt."""
    shade = sum(prompt.encode()) % 200
    image = Image.new("RGB", (width, height), (shade, 120, 255 - shade))
    ImageDraw.Draw(image).ellipse((width // 4, height // 4, 3 * width // 4, 3 * height // 4), fill=(250, 250, 250))
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()
