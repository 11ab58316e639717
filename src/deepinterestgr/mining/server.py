"""A small OpenAI-compatible chat server over one transformers model: quick local serving, and the tests' real server.

    python -m deepinterestgr.mining.server --model DIR_OR_HUB_ID [--gguf-file FILE] [--port 8000] [--api-key KEY]

Why not `transformers serve`: it runs here offline (with the `openai` package added) but ignores `response_format`,
which mining needs, and it has no way to inject faults for tests. This server:
- `POST /v1/chat/completions` (non-streaming): `messages`, `max_tokens` / `max_completion_tokens`, and
  `response_format` as OpenAI's `{"type": "json_schema", "json_schema": {"schema": ...}}` or TGI's
  `{"type": "json_object", "value": schema}` (what `huggingface_hub.InferenceClient` sends to a `base_url`),
  enforced with xgrammar. Greedy decoding. Requests that arrive together are batched into one `generate` call,
  so concurrent clients gain throughput.
- `GET /v1/models`, `GET /health`, `GET /stats` (request counters, used by tests and benchmarks).
- `--test-faults` (tests only) enables `POST /test/faults`, which makes the next chat requests fail with a status
  or wait before answering.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from jinja2 import TemplateError
from pydantic import BaseModel, ConfigDict, Field

from deepinterestgr.offline_models import resolve_causal_lm


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
    prompt: str
    max_tokens: int
    grammar: Any  # xgrammar.CompiledGrammar, or None for free text
    future: asyncio.Future = field(repr=False)


class ChatModel:
    """One causal LM and its tokenizer, answering batches of chat prompts greedily (optionally grammar-constrained)."""

    def __init__(self, name: str, gguf_file: str | None = None, chat_template: str | None = None) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path, gguf_file = resolve_causal_lm(name, gguf_file)
        gguf = {"gguf_file": gguf_file} if gguf_file else {}
        self.name = name
        self.tokenizer = AutoTokenizer.from_pretrained(path, **gguf)
        self.model = AutoModelForCausalLM.from_pretrained(path, **gguf).eval()
        if chat_template is not None:
            self.tokenizer.chat_template = chat_template
        if not self.tokenizer.chat_template:
            raise SystemExit(
                f"model {name!r}: its tokenizer has no chat template; serve an instruct/chat model "
                "or pass --chat-template FILE (a Jinja chat template)"
            )
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        eos = self.model.generation_config.eos_token_id or self.tokenizer.eos_token_id
        self.eos_ids = {eos} if isinstance(eos, int) else set(eos or [])
        self.max_positions: int | None = getattr(self.model.config, "max_position_embeddings", None)
        self._compiler = None
        self._tokenizer_lock = threading.Lock()  # a fast tokenizer must not encode on two threads at once

    def prompt(self, messages: list[dict[str, Any]], max_tokens: int) -> str:
        """The chat-templated prompt; refused (400) when it and `max_tokens` do not fit the model's context."""
        try:
            text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except TemplateError as err:  # e.g. a template that requires alternating user/assistant turns
            raise RequestError(400, f"the model's chat template refused these messages: {err}") from None
        if self.max_positions is not None:
            with self._tokenizer_lock:
                length = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            if length + max_tokens > self.max_positions:
                raise RequestError(
                    400,
                    f"prompt ({length} tokens) + max_tokens ({max_tokens}) exceed the model's context of "
                    f"{self.max_positions} tokens: shorten the messages or lower max_tokens",
                )
        return text

    def compile_schema(self, schema: dict[str, Any]) -> Any:
        """The xgrammar grammar for JSON `schema` (compiled once per distinct schema: xgrammar caches it)."""
        try:
            import xgrammar as xgr
        except ImportError:
            raise RequestError(
                400, "this server needs the `xgrammar` package to honour response_format (pip install xgrammar)"
            ) from None
        with self._tokenizer_lock:
            if self._compiler is None:
                info = xgr.TokenizerInfo.from_huggingface(
                    self.tokenizer, vocab_size=self.model.config.vocab_size, stop_token_ids=sorted(self.eos_ids)
                )
                self._compiler = xgr.GrammarCompiler(info, max_threads=1)
        try:
            return self._compiler.compile_json_schema(json.dumps(schema), any_whitespace=False)
        except Exception as err:  # xgrammar raises RuntimeError/ValueError subclasses for invalid schemas
            raise RequestError(400, f"response_format schema could not be compiled: {err}") from None

    @torch.inference_mode()
    def generate(self, prompts: list[str], max_tokens: list[int], grammars: list[Any] | None) -> list[dict]:
        """Answer `prompts` in one batch: per prompt its text, finish reason ("stop"/"length") and token counts."""
        with self._tokenizer_lock:
            encoded = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        processors = []
        if grammars is not None:
            import xgrammar as xgr

            processors.append(xgr.contrib.hf.LogitsProcessor(grammars))
        output = self.model.generate(
            **encoded,
            max_new_tokens=max(max_tokens),
            do_sample=False,
            logits_processor=processors,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        width = encoded["input_ids"].shape[1]
        answers = []
        for row, limit in enumerate(max_tokens):
            tokens = output[row, width:][:limit].tolist()
            stop = next((i for i, token in enumerate(tokens) if token in self.eos_ids), None)
            finish = "stop" if stop is not None or len(tokens) < limit else "length"
            tokens = tokens[:stop]
            with self._tokenizer_lock:
                text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            answers.append(
                {
                    "text": text,
                    "finish_reason": finish,
                    "prompt_tokens": int(encoded["attention_mask"][row].sum()),
                    "completion_tokens": len(tokens),
                }
            )
        return answers


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


def _messages(request: ChatRequest) -> list[dict[str, str]]:
    """Chat messages with text content only (list content: text parts joined); images are refused."""
    messages = []
    for message in request.messages:
        content = message.content
        if isinstance(content, list):
            kinds = {part.get("type") for part in content} - {"text"}
            if kinds:
                raise RequestError(400, f"this server serves a text-only model; content parts {sorted(kinds)} refused")
            content = "".join(part.get("text", "") for part in content)
        messages.append({"role": message.role, "content": content or ""})
    return messages


def _error(status: int, message: str) -> JSONResponse:
    kind = "rate_limit_error" if status == 429 else "server_error" if status >= 500 else "invalid_request_error"
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)


def build_app(
    chat_model: ChatModel,
    *,
    api_key: str | None = None,
    max_batch_size: int = 8,
    default_max_tokens: int = 256,
    test_faults: bool = False,
) -> FastAPI:
    """The FastAPI app serving `chat_model`; one background task batches queued requests into `generate` calls."""
    stats = {"requests": 0, "answered": 0, "rejected": 0, "injected_failures": 0, "json_schema": 0, "batches": 0}
    faults = Faults()
    queue: asyncio.Queue[_Job] = asyncio.Queue()

    async def batcher() -> None:
        while True:
            jobs = [await queue.get()]
            while len(jobs) < max_batch_size and not queue.empty():
                jobs.append(queue.get_nowait())
            jobs = [job for job in jobs if not job.future.done()]  # drop requests whose client went away
            for constrained in (False, True):  # free-text rows and grammar rows go in separate generate calls
                group = [job for job in jobs if (job.grammar is not None) == constrained]
                if not group:
                    continue
                stats["batches"] += 1
                try:
                    answers = await asyncio.to_thread(
                        chat_model.generate,
                        [job.prompt for job in group],
                        [job.max_tokens for job in group],
                        [job.grammar for job in group] if constrained else None,
                    )
                except Exception as err:  # a failed batch fails its requests, not the server
                    for job in group:
                        if not job.future.done():
                            job.future.set_exception(err)
                    continue
                for job, answer in zip(group, answers, strict=True):
                    if not job.future.done():  # the client may have gone away
                        job.future.set_result(answer)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(batcher())
        yield
        task.cancel()

    app = FastAPI(title=f"deepinterestgr chat server: {chat_model.name}", lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/stats")
    async def get_stats() -> dict:
        return {**stats, "queued": queue.qsize()}

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": chat_model.name, "object": "model", "owned_by": "deepinterestgr"}]}

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
            request = ChatRequest.model_validate(await http_request.json())
            if request.stream:
                raise RequestError(400, "streaming is not supported by this server: send stream=false")
            schema = _schema_of(request.response_format)
            limit = request.max_completion_tokens or request.max_tokens or default_max_tokens
            prompt = await asyncio.to_thread(chat_model.prompt, _messages(request), limit)
            grammar = None
            if schema is not None:
                stats["json_schema"] += 1
                grammar = await asyncio.to_thread(chat_model.compile_schema, schema)
        except RequestError as err:
            stats["rejected"] += 1
            return _error(err.status, str(err))
        except (ValueError, TypeError) as err:  # pydantic ValidationError is a ValueError; bad JSON too
            stats["rejected"] += 1
            return _error(400, f"invalid chat request: {err}")
        job = _Job(prompt, limit, grammar, asyncio.get_running_loop().create_future())
        await queue.put(job)
        try:
            answer = await job.future
        except Exception as err:
            return _error(500, f"generation failed: {type(err).__name__}: {err}")
        stats["answered"] += 1
        completion, prompt_tokens = answer["completion_tokens"], answer["prompt_tokens"]
        return JSONResponse(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": chat_model.name,
                "system_fingerprint": "deepinterestgr",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer["text"]},
                        "finish_reason": answer["finish_reason"],
                        "logprobs": None,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion,
                    "total_tokens": prompt_tokens + completion,
                },
            }
        )

    return app


def main(argv: list[str] | None = None) -> None:
    """Command line: load the model, then serve until interrupted."""
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m deepinterestgr.mining.server", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="model folder or Hub id (a causal LM with a chat template)")
    parser.add_argument("--gguf-file", default=None, help="GGUF file inside --model to load")
    parser.add_argument("--chat-template", default=None, help="file with a Jinja chat template, if the model has none")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on chat requests")
    parser.add_argument("--max-batch-size", type=int, default=8, help="requests answered together in one generate")
    parser.add_argument("--max-tokens", type=int, default=256, help="answer length when a request sets none")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--test-faults", action="store_true", help="tests only: enable POST /test/faults")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    template = Path(args.chat_template).read_text(encoding="utf-8") if args.chat_template else None
    chat_model = ChatModel(args.model, args.gguf_file, template)
    app = build_app(
        chat_model,
        api_key=args.api_key,
        max_batch_size=args.max_batch_size,
        default_max_tokens=args.max_tokens,
        test_faults=args.test_faults,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
