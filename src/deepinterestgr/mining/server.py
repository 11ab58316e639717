"""A small OpenAI-compatible chat server over one local model: quick local serving, and the tests' real server.

    python -m deepinterestgr.mining.server --model DIR_OR_HUB_ID [--gguf-file FILE] [--port 8000] [--api-key KEY]

Why not `transformers serve`: it runs here offline (with the `openai` package added) but ignores `response_format`,
which mining needs, and it has no way to inject faults for tests. This server is an HTTP layer over a `LocalBackend`
(mining/local.py), which loads the model and answers: chat template, greedy decoding, xgrammar, shared-prefix reuse.
- `POST /v1/chat/completions` (non-streaming): `messages`, `max_tokens` / `max_completion_tokens`, and
  `response_format` as OpenAI's `{"type": "json_schema", "json_schema": {"schema": ...}}` or TGI's
  `{"type": "json_object", "value": schema}` (what `huggingface_hub.InferenceClient` sends to a `base_url`),
  enforced with xgrammar. Image-text models also take `image_url` parts (base64 data URLs) in the last user message.
  Requests that arrive together are batched into one `LocalBackend.generate` call, so concurrent clients gain
  throughput.
- `GET /v1/models`, `GET /health`, `GET /stats` (request counters, used by tests and benchmarks).
- `--test-faults` (tests only) enables `POST /test/faults`, which makes the next chat requests fail with a status
  or wait before answering.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from deepinterestgr.errors import ConfigError
from deepinterestgr.mining.backends import GenerationRequest, GenerationResult
from deepinterestgr.mining.local import LocalBackend


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    """The OpenAI chat request fields this server reads; other fields (temperature, seed, ...) are accepted, ignored."""

    model_config = ConfigDict(extra="allow")
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    response_format: dict[str, Any] | None = None
    stream: bool = False


class Faults(BaseModel):
    """Test-only fault injection: the next `fail_next` chat requests answer `status`; every request waits `delay` s."""

    fail_next: int = Field(default=0, ge=0)
    status: int = Field(default=503, ge=400, le=599)
    delay: float = Field(default=0.0, ge=0.0)


class RequestError(Exception):
    """A bad request: answered with `status` and `message` (OpenAI error shape)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _Job:
    request: GenerationRequest
    future: asyncio.Future = field(repr=False)


def _schema_of(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    """The JSON schema in an OpenAI or TGI `response_format`, or None for free text."""
    if not response_format or response_format.get("type") == "text":
        return None
    kind = response_format.get("type")
    if kind == "json_schema" and isinstance(response_format.get("json_schema"), dict):
        schema = response_format["json_schema"].get("schema")
    elif kind == "json_schema" and isinstance(response_format.get("value"), dict):  # TGI: value = {name, schema}
        schema = response_format["value"].get("schema", response_format["value"])
    elif kind in ("json_object", "json"):
        schema = response_format.get("value") or response_format.get("schema") or {"type": "object"}
    else:
        raise RequestError(
            400, f"response_format type {kind!r} is not supported: use 'text', 'json_schema' or 'json_object'"
        )
    if not isinstance(schema, dict):
        raise RequestError(400, "response_format carries no JSON schema object")
    return schema


def _messages(request: ChatRequest, vision: bool) -> tuple[tuple[dict[str, str], ...], tuple[str, ...]]:
    """Chat messages with text content (list content: text parts joined), and the images of `image_url` parts.

    A text-only model refuses image parts; an image-text model takes base64 data URLs in the last user message
    (where `LocalBackend` puts a request's images)."""
    allowed = {"text", "image_url"} if vision else {"text"}
    last_user = max((k for k, message in enumerate(request.messages) if message.role == "user"), default=-1)
    messages, images = [], []
    for k, message in enumerate(request.messages):
        content = message.content
        if isinstance(content, list):
            kinds = {str(part.get("type")) for part in content} - allowed
            if kinds:
                served = "an image-text model" if vision else "a text-only model"
                raise RequestError(400, f"this server serves {served}; content parts {sorted(kinds)} refused")
            for part in content:
                if part.get("type") != "image_url":
                    continue
                image = part.get("image_url")
                url = image.get("url") if isinstance(image, dict) else image
                if k != last_user:
                    raise RequestError(400, "image_url parts are accepted in the last user message only")
                if not isinstance(url, str) or not url.startswith("data:"):
                    raise RequestError(400, "this server fetches no image URLs: send images as base64 data URLs")
                images.append(url)
            content = "".join(part.get("text", "") for part in content if part.get("type") == "text")
        messages.append({"role": message.role, "content": content or ""})
    return tuple(messages), tuple(images)


def _error(status: int, message: str) -> JSONResponse:
    kind = "rate_limit_error" if status == 429 else "server_error" if status >= 500 else "invalid_request_error"
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)


def build_app(
    backend: LocalBackend, *, api_key: str | None = None, default_max_tokens: int = 256, test_faults: bool = False
) -> FastAPI:
    """The FastAPI app serving `backend`; one background task hands queued requests, up to `backend.batch_size` at a
    time, to `backend.generate` on a worker thread."""
    stats = {"requests": 0, "answered": 0, "rejected": 0, "injected_failures": 0, "json_schema": 0, "batches": 0}
    faults = Faults()
    queue: asyncio.Queue[_Job] = asyncio.Queue()

    def settle(future: asyncio.Future, result: GenerationResult) -> None:
        if not future.done():  # the client may have gone away
            future.set_result(result)

    def answer(jobs: list[_Job], loop: asyncio.AbstractEventLoop) -> None:
        """On a worker thread: each answer goes back to its request as soon as its batch is done."""
        for index, result in backend.generate([job.request for job in jobs]):
            loop.call_soon_threadsafe(settle, jobs[index].future, result)

    async def batcher() -> None:
        while True:
            jobs = [await queue.get()]
            while len(jobs) < backend.batch_size and not queue.empty():
                jobs.append(queue.get_nowait())
            jobs = [job for job in jobs if not job.future.done()]  # drop requests whose client went away
            if not jobs:
                continue
            stats["batches"] += 1
            try:
                await asyncio.to_thread(answer, jobs, asyncio.get_running_loop())
            except Exception as err:  # a failed batch fails its unanswered requests, not the server
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(err)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(batcher())
        yield
        task.cancel()

    app = FastAPI(title=f"deepinterestgr chat server: {backend.model}", lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/stats")
    async def get_stats() -> dict:
        return {**stats, "queued": queue.qsize(), "prefix_tokens_reused": backend.prefix_tokens_reused}

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": backend.model, "object": "model", "owned_by": "deepinterestgr"}]}

    if test_faults:

        @app.post("/test/faults")
        async def set_faults(new: Faults) -> dict:
            nonlocal faults
            faults = new
            return faults.model_dump()

    @app.post("/v1/chat/completions")
    async def chat(http_request: Request) -> JSONResponse:
        stats["requests"] += 1
        if faults.fail_next > 0:
            faults.fail_next -= 1
            stats["injected_failures"] += 1
            return _error(faults.status, f"injected failure (test fault, status {faults.status})")
        if faults.delay:
            await asyncio.sleep(faults.delay)
        if api_key is not None and http_request.headers.get("authorization") != f"Bearer {api_key}":
            stats["rejected"] += 1
            return _error(401, "missing or wrong API key (send 'Authorization: Bearer <key>')")
        try:
            chat_request = ChatRequest.model_validate(await http_request.json())
            if chat_request.stream:
                raise RequestError(400, "streaming is not supported by this server: send stream=false")
            schema = _schema_of(chat_request.response_format)
            messages, images = _messages(chat_request, backend.vision)
            limit = chat_request.max_completion_tokens or chat_request.max_tokens or default_max_tokens
            request = GenerationRequest(messages, json_schema=schema, max_new_tokens=limit, images=images)
            stats["json_schema"] += schema is not None
            try:  # refused here with a 400, rather than failing the batch it would join
                await asyncio.to_thread(backend.check_request, request)
            except ValueError as err:  # ConfigError is one too
                raise RequestError(400, str(err)) from None
        except RequestError as err:
            stats["rejected"] += 1
            return _error(err.status, str(err))
        except (ValueError, TypeError) as err:  # pydantic ValidationError is a ValueError; bad JSON too
            stats["rejected"] += 1
            return _error(400, f"invalid chat request: {err}")
        job = _Job(request, asyncio.get_running_loop().create_future())
        await queue.put(job)
        try:
            result: GenerationResult = await job.future
        except Exception as err:
            return _error(500, f"generation failed: {type(err).__name__}: {err}")
        if result.finish_reason == "error":  # an image that cannot be read
            stats["rejected"] += 1
            return _error(400, result.error or "the request could not be answered")
        stats["answered"] += 1
        prompt_tokens, completion_tokens = result.prompt_tokens or 0, result.completion_tokens or 0
        return JSONResponse(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": backend.model,
                "system_fingerprint": "deepinterestgr",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": result.text},
                        "finish_reason": result.finish_reason,
                        "logprobs": None,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        )

    return app


def main(argv: list[str] | None = None) -> None:
    """Command line: load the model, then serve until interrupted."""
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m deepinterestgr.mining.server", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="model folder or Hub id (a chat model, or --chat-template)")
    parser.add_argument("--gguf-file", default=None, help="GGUF file inside --model to load")
    parser.add_argument("--chat-template", default=None, help="file with a Jinja chat template, if the model has none")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on chat requests")
    parser.add_argument("--max-batch-size", type=int, default=8, help="requests answered together in one generate")
    parser.add_argument("--max-tokens", type=int, default=256, help="answer length when a request sets none")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--test-faults", action="store_true", help="tests only: enable POST /test/faults")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    template = Path(args.chat_template).read_text(encoding="utf-8") if args.chat_template else None
    try:
        backend = LocalBackend(
            args.model,
            gguf_file=args.gguf_file,
            batch_size=args.max_batch_size,
            device=args.device,
            chat_template=template,
        )
    except ConfigError as err:
        raise SystemExit(str(err)) from None
    app = build_app(backend, api_key=args.api_key, default_max_tokens=args.max_tokens, test_faults=args.test_faults)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
