"""`ServedBackend`: answers from any OpenAI-compatible chat endpoint, concurrently, with retries.

vLLM, TGI, llama.cpp, Ollama, `transformers serve`, `python -m deepinterestgr.mining.server`, or HF Inference
Providers (no `base_url`), all through `huggingface_hub.InferenceClient.chat_completion`. Requests run on a bounded
thread pool and stream back as they complete. 429, 5xx, timeouts and dropped connections are retried with
exponential backoff and jitter; other 4xx are not (they cannot succeed later) and become error results that name the
status and the endpoint.

JSON schemas go out as OpenAI's `response_format={"type": "json_schema", ...}`. Note: `InferenceClient` (up to at
least huggingface_hub 2.4) rewrites that, for a `base_url`, into TGI's `{"type": "json_object", "value": schema}`.
TGI and our server enforce the schema in that form; vLLM, llama.cpp and Ollama read it as plain JSON mode. For those,
pass their own schema field per request through `schema_body`, e.g. `lambda s: {"structured_outputs": {"json": s}}`
for recent vLLM or `lambda s: {"json_schema": s}` for llama.cpp.
"""

from __future__ import annotations

import base64
import mimetypes
import random
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from urllib.parse import urlparse

from huggingface_hub import InferenceClient, InferenceTimeoutError, constants
from huggingface_hub.errors import HfHubHTTPError

from deepinterestgr.mining.backends import GenerationRequest, GenerationResult
from deepinterestgr.offline_models import SMOLLM2_ID

try:  # the HTTP library under huggingface_hub (httpx for 1.x, httpx2 for 2.x), exported under one name
    from huggingface_hub.utils import httpx as _http
except ImportError:  # pragma: no cover - older huggingface_hub
    import httpx as _http

RETRY_STATUSES = frozenset({408, 429})  # and every 5xx
TRANSIENT_ERRORS = (InferenceTimeoutError, _http.TimeoutException, _http.NetworkError, _http.RemoteProtocolError)
HF_HOSTS = ("huggingface.co", "hf.co", "huggingface.cloud", "hf.space")
NO_TOKEN = "EMPTY"  # sent as the bearer token to non-Hugging Face hosts when no api_key is given


def _is_hf_host(url: str) -> bool:
    host = urlparse(url).hostname or ""
    return any(host == suffix or host.endswith("." + suffix) for suffix in HF_HOSTS)


def _image_url(image: str) -> str:
    """`image` as an `image_url` URL: remote and data URLs pass through, a local file becomes a base64 data URL."""
    if image.startswith(("http://", "https://", "data:")):
        return image
    mime = mimetypes.guess_type(image)[0] or "image/png"
    return f"data:{mime};base64,{base64.b64encode(Path(image).read_bytes()).decode('ascii')}"


def _check_images(position: int, request: GenerationRequest) -> None:
    """Refuse a request whose images cannot be sent: no user turn to carry them, or a local file that is missing."""
    if not request.images:
        return
    if not any(message.get("role") == "user" for message in request.messages):
        raise ValueError(f"request {position} has images but no user message to attach them to")
    missing = [
        image
        for image in request.images
        if not image.startswith(("http://", "https://", "data:")) and not Path(image).is_file()
    ]
    if missing:
        raise FileNotFoundError(f"request {position}: image file(s) not found: {missing}; pass existing paths or URLs")


def _messages(request: GenerationRequest) -> list[dict]:
    """The request's messages, with its images attached to the last user turn as OpenAI `image_url` parts.

    Built when the request is sent (not before), so only the images in flight are held in memory.
    """
    messages = [dict(message) for message in request.messages]
    if not request.images:
        return messages
    last_user = max(i for i, message in enumerate(messages) if message.get("role") == "user")
    text = messages[last_user].get("content")
    parts = [{"type": "image_url", "image_url": {"url": _image_url(image)}} for image in request.images]
    if isinstance(text, list):
        parts.extend(text)
    elif text:
        parts.append({"type": "text", "text": text})
    messages[last_user] = {**messages[last_user], "content": parts}
    return messages


def _response_format(schema: dict) -> dict:
    name = re.sub(r"[^a-zA-Z0-9_-]", "_", str(schema.get("title", "answer")))[:64] or "answer"
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def _retry_after(error: HfHubHTTPError) -> float | None:
    """Seconds from a `Retry-After` header (seconds form only), if the server sent one."""
    value = error.response.headers.get("retry-after") if error.response is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class ServedBackend:
    """Chat answers from an OpenAI-compatible endpoint (`base_url`) or HF Inference Providers (`base_url=None`).

    `model` is sent as the request's `model` field (vLLM checks it) and identifies the backend in cache keys.
    Without `api_key`, the Hugging Face token is used only for Hugging Face hosts; other hosts get no token.
    `timeout` is per attempt; a request makes at most `max_retries + 1` attempts.
    """

    name = "served"

    def __init__(
        self,
        base_url: str | None = None,
        model: str = SMOLLM2_ID,
        *,
        api_key: str | None = None,
        concurrency: int = 4,
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        temperature: float | None = None,
        provider: str | None = None,
        schema_body: Callable[[dict], dict] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"ServedBackend: concurrency={concurrency}; use 1 or more parallel requests")
        if max_retries < 0 or timeout <= 0 or backoff < 0:
            raise ValueError(
                f"ServedBackend: max_retries={max_retries}, timeout={timeout}, backoff={backoff}; "
                "use max_retries >= 0, timeout > 0 seconds and backoff >= 0 seconds"
            )
        if base_url is not None and provider is not None:
            raise ValueError(
                "ServedBackend: pass base_url (an endpoint) or provider (HF Inference Providers), not both"
            )
        self.model = model
        self.base_url = base_url
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.temperature = temperature
        self.schema_body = schema_body
        self.endpoint = base_url or f"HF Inference Providers ({provider or 'auto'})"
        if base_url is None:
            self._client = InferenceClient(provider=provider, api_key=api_key, timeout=timeout)
        else:
            token = api_key if api_key is not None or _is_hf_host(base_url) else NO_TOKEN
            self._client = InferenceClient(base_url=base_url, api_key=token, timeout=timeout)

    def __repr__(self) -> str:  # never shows the token
        return f"ServedBackend(endpoint={self.endpoint!r}, model={self.model!r}, concurrency={self.concurrency})"

    def generate(self, requests: Sequence[GenerationRequest]) -> Iterator[tuple[int, GenerationResult]]:
        """Yield (index, result) as answers complete, at most `concurrency` requests in flight.

        Offline mode and image paths are checked before anything is sent. Stopping the iteration cancels what was
        not sent yet and ends retries; requests already sent finish within `timeout`.
        """
        if constants.is_offline_mode():  # huggingface_hub then refuses every request, even to a local base_url
            raise RuntimeError(
                f"ServedBackend({self.endpoint}): HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set, and huggingface_hub "
                "then refuses every HTTP request, local endpoints included; unset it for the process that mines "
                "(local model folders still load without the Hub)"
            )
        requests = list(requests)
        for position, request in enumerate(requests):
            _check_images(position, request)
        stop = threading.Event()
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="served-backend")
        pending: dict[Future[GenerationResult], int] = {}
        queued = 0
        try:
            while queued < len(requests) or pending:
                while queued < len(requests) and len(pending) < 2 * self.concurrency:  # keep every worker busy
                    future = pool.submit(self._ask, requests[queued], stop)
                    pending[future] = queued
                    queued += 1
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield pending.pop(future), future.result()
        finally:
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)

    def _ask(self, request: GenerationRequest, stop: threading.Event) -> GenerationResult:
        """One request with retries; every failure becomes a `GenerationResult(finish_reason="error")`."""
        messages = _messages(request)
        extra = self.schema_body(request.json_schema) if self.schema_body and request.json_schema else None
        failure = "not sent: the run was stopped"
        for attempt in range(self.max_retries + 1):
            if stop.is_set():
                break
            wait_s: float | None = None
            try:
                output = self._client.chat_completion(
                    messages,
                    model=self.model,
                    max_tokens=request.max_new_tokens,
                    response_format=_response_format(request.json_schema) if request.json_schema else None,
                    temperature=self.temperature,
                    extra_body=extra,
                )
            except HfHubHTTPError as err:
                status = err.response.status_code if err.response is not None else None
                failure = f"HTTP {status} from {self.endpoint} (model {self.model!r}): {_first_lines(err)}"
                if status is None or (status < 500 and status not in RETRY_STATUSES):
                    return GenerationResult("", "error", f"{failure} (not retried: a client error)")
                wait_s = _retry_after(err)
            except TRANSIENT_ERRORS as err:
                failure = f"{type(err).__name__} from {self.endpoint} (model {self.model!r}, timeout {self.timeout}s)"
            except Exception as err:  # a malformed answer, or anything else the client raises for one request
                return GenerationResult("", "error", f"{type(err).__name__} from {self.endpoint}: {_first_lines(err)}")
            else:
                return _result(output)
            if attempt < self.max_retries:
                delay = min(self.max_backoff, self.backoff * 2**attempt) * random.uniform(0.5, 1.0)
                stop.wait(min(self.max_backoff, wait_s) if wait_s is not None else delay)
        return GenerationResult("", "error", f"{failure} (after {attempt + 1} attempt(s))")


def _first_lines(error: Exception, limit: int = 500) -> str:
    """The error message on one line, cut to `limit` characters."""
    return " ".join(str(error).split())[:limit]


def _result(output: object) -> GenerationResult:
    """A `GenerationResult` from a `ChatCompletionOutput`: "length" stays "length", other ends are "stop"."""
    choices = getattr(output, "choices", None)
    if not choices:
        return GenerationResult("", "error", "the endpoint answered with no choices")
    choice = choices[0]
    text = (choice.message.content if choice.message else None) or ""
    if choice.finish_reason == "length":
        return GenerationResult(text, "length")
    if choice.finish_reason == "content_filter":
        return GenerationResult(text, "error", "the endpoint's content filter stopped the answer")
    return GenerationResult(text, "stop")
