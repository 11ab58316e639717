"""`LocalBackend`: answer mining requests with a transformers model on this machine.

Any causal LM (text prompts) or image-text-to-text model (`AutoModelForImageTextToText` + `AutoProcessor`, for CMSA
captions) works: prompts go through the model's chat template, batches are left-padded and decoded greedily.

- Structured output: a request's `json_schema` is compiled by xgrammar into a token mask applied at every step, so
  the answer always matches the schema (it can only fail by hitting `max_new_tokens`, reported as "length").
  Requests with different schemas share a batch (one grammar per row).
- Shared prompt prefix: requests that share their conversation up to the last message (a task's instructions and
  few-shot turns) are batched together, and the keys/values of their longest common token prefix are computed once
  and reused by every batch of the group: prompt length is the main cost on CPU.
- `check_request` refuses, before any generation, a request that would fail or not fit (the chat server's 400s).
  Results carry their prompt and answer token counts.
- `loglikelihood` scores continuations (the judge's grounding score: log p(descriptor | item) vs a blank item).
"""

from __future__ import annotations

import base64
import copy
import importlib.util
import io
import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from jinja2 import TemplateError
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
    AutoTokenizer,
    DynamicCache,
    GenerationConfig,
    GgufConfig,
    LogitsProcessor,
    PreTrainedModel,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

from deepinterestgr.errors import ConfigError
from deepinterestgr.mining.backends import GenerationRequest, GenerationResult
from deepinterestgr.offline_models import SMOLLM2_ID, SMOLLM2_INSTALL, resolve_causal_lm

DEFAULT_MODEL = SMOLLM2_ID


@dataclass
class _Row:
    """One request ready for a text batch: its index in the caller's list and its prompt token ids."""

    index: int
    ids: list[int]
    max_new_tokens: int


class LocalBackend:
    """Batched, greedy, schema-constrained generation with a local transformers model (see the module doc)."""

    name = "local"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        gguf_file: str | None = None,
        batch_size: int = 8,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        constrain: bool = True,
        reuse_prefix: bool = True,
        min_prefix_tokens: int = 32,
        trust_remote_code: bool = False,
        chat_template: str | None = None,
    ) -> None:
        """Load `model` (Hub id or folder; `gguf_file`: a GGUF file in it, dequantized). SmolLM2-135M-Instruct's
        Hub id resolves to its packaged GGUF copy when the Hub is unreachable (`resolve_causal_lm`).

        `constrain=False` ignores requests' JSON schemas (for comparison); `reuse_prefix=False` recomputes every
        prompt in full; a shared prefix shorter than `min_prefix_tokens` is not worth a separate pass.
        `chat_template` (Jinja) replaces the model's own, or gives one to a model that has none.
        """
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        path, gguf_file = resolve_causal_lm(model, gguf_file)
        lm, processor = _load(model, path, gguf_file, device=device, dtype=dtype, trust_remote_code=trust_remote_code)
        if chat_template is not None:
            processor.chat_template = chat_template  # the tokenizer of a text model, else its processor
        model_id = f"{model}:{gguf_file}" if gguf_file else model  # a GGUF copy answers differently from the Hub id
        self._attach(lm, processor, model_id, batch_size, constrain, reuse_prefix, min_prefix_tokens)

    @classmethod
    def from_model(
        cls,
        lm: PreTrainedModel,
        processor,
        *,
        model_id: str,
        batch_size: int = 8,
        constrain: bool = True,
        reuse_prefix: bool = True,
        min_prefix_tokens: int = 32,
    ) -> LocalBackend:
        """Wrap an already loaded model and its tokenizer (text) or processor (image-text-to-text)."""
        backend = cls.__new__(cls)
        backend._attach(lm, processor, model_id, batch_size, constrain, reuse_prefix, min_prefix_tokens)
        return backend

    def _attach(self, lm, processor, model_id, batch_size, constrain, reuse_prefix, min_prefix_tokens) -> None:
        if batch_size < 1:
            raise ConfigError(f"LocalBackend batch_size must be >= 1, got {batch_size}")
        self.model: str = model_id
        self.lm = lm.eval()
        self.processor = processor
        self.vision = lm.config.model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.tokenizer.padding_side = "left"  # the processor pads image-text batches
        if getattr(self.tokenizer, "chat_template", None) is None and getattr(processor, "chat_template", None) is None:
            raise ConfigError(
                f"model {model_id!r} has no chat template: use an instruct/chat model, or give it one "
                "(LocalBackend's `chat_template`, the chat server's --chat-template FILE, or `tokenizer.chat_template` "
                "before LocalBackend.from_model)"
            )
        self.batch_size = batch_size
        self.constrain = constrain
        self.reuse_prefix = reuse_prefix
        self.min_prefix_tokens = min_prefix_tokens
        eos = lm.generation_config.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in eos:
            eos.append(self.tokenizer.eos_token_id)
        if not eos:
            raise ConfigError(f"model {model_id!r}: neither its generation config nor its tokenizer names an EOS token")
        self.eos_ids = eos
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos[0]
        self.max_positions: int | None = getattr(lm.config.get_text_config(), "max_position_embeddings", None)
        self.prefix_tokens_reused = 0  # prompt tokens not recomputed thanks to shared prefixes (a running count)
        self._grammar_compiler = None  # built with the first schema (xgrammar's view of the vocabulary)
        self._grammars: dict[str, object] = {}
        self._control_tokens: torch.Tensor | None = None
        # `check_request` may run on another thread than `generate` (the chat server): a fast tokenizer must not be
        # used while another thread changes its padding (the processor pads), nor a grammar compiled twice at once
        self._tokenizer_lock = threading.Lock()
        self._grammar_lock = threading.Lock()

    @property
    def device(self) -> torch.device:
        return self.lm.device

    # ----- generation -----
    def check_request(self, request: GenerationRequest) -> None:
        """Raise ConfigError or ValueError, with the reason, if `request` cannot be answered: images for a text-only
        model, messages the chat template refuses, a prompt that with `max_new_tokens` exceeds the model's context
        (for image-text models, counting each image as one token), a JSON schema xgrammar cannot compile. Compiles
        and keeps the grammar, so `generate` does not compile it again."""
        if request.images and not self.vision:
            raise ConfigError(
                f"the request attaches images but {self.model!r} is a text-only model: use an image-text-to-text "
                "model (AutoModelForImageTextToText)"
            )
        if request.images and not any(message.get("role") == "user" for message in request.messages):
            raise ValueError("the request attaches images but has no user message to attach them to")
        try:
            prompt = self._prompt_ids(request)
        except TemplateError as err:  # e.g. a template that requires alternating user/assistant turns
            raise ValueError(f"the model's chat template refused these messages: {err}") from None
        if self.max_positions is not None and len(prompt) + request.max_new_tokens > self.max_positions:
            raise ValueError(
                f"prompt ({len(prompt)} tokens) + max_tokens ({request.max_new_tokens}) exceed the model's context of "
                f"{self.max_positions} tokens: shorten the messages or lower max_tokens"
            )
        if request.json_schema is not None and self.constrain:
            try:
                self._grammar(request.json_schema)
            except ImportError:
                raise ConfigError("JSON schemas need the `xgrammar` package (pip install xgrammar)") from None
            except Exception as err:  # xgrammar raises RuntimeError/ValueError subclasses for invalid schemas
                raise ConfigError(f"the JSON schema could not be compiled: {err}") from None

    def generate(self, requests: Sequence[GenerationRequest]) -> Iterator[tuple[int, GenerationResult]]:
        """Yield (index, result) as each batch completes. Requests sharing their conversation up to the last
        message (and whether they have a schema) form a group that reads its common prefix once; each group is
        batched shortest prompts first. Requests with different `max_new_tokens` or schemas may share a batch: each
        is cut at its own limit and held to its own grammar."""
        if not self.vision:
            with_images = [i for i, r in enumerate(requests) if r.images]
            if with_images:
                raise ConfigError(
                    f"requests {with_images[:5]} attach images but {self.model!r} is a text-only model: use an "
                    "image-text-to-text model (AutoModelForImageTextToText) for captions"
                )
        groups: dict[str, list[int]] = {}
        for i, request in enumerate(requests):
            constrained = request.json_schema is not None and self.constrain  # a batch is all free or all constrained
            key = json.dumps([constrained, request.messages[:-1], bool(request.images)], sort_keys=True)
            groups.setdefault(key, []).append(i)
        for indices in groups.values():
            if self.vision:
                yield from self._generate_vision([(i, requests[i]) for i in indices])
            else:
                yield from self._generate_text(indices, requests)

    def _generate_text(self, indices: list[int], requests: Sequence[GenerationRequest]) -> Iterator:
        rows = [_Row(i, self._prompt_ids(requests[i]), requests[i].max_new_tokens) for i in indices]
        prefix_len = self._shared_prefix_length([r.ids for r in rows])
        prefix_cache = self._prefill(rows[0].ids[:prefix_len]) if prefix_len else None
        prefix_len = prefix_len if prefix_cache is not None else 0
        self.prefix_tokens_reused += prefix_len * (len(rows) - 1)
        rows.sort(key=lambda r: len(r.ids))
        for start in range(0, len(rows), self.batch_size):
            batch = rows[start : start + self.batch_size]
            suffix_len = max(len(r.ids) for r in batch) - prefix_len
            input_ids = torch.full((len(batch), prefix_len + suffix_len), self.pad_id, dtype=torch.long)
            mask = torch.zeros_like(input_ids)
            for b, row in enumerate(batch):
                # shared prefix, then left padding, then the row's own tokens: positions come from the mask
                input_ids[b, :prefix_len] = torch.tensor(row.ids[:prefix_len])
                mask[b, :prefix_len] = 1
                own = row.ids[prefix_len:]
                input_ids[b, input_ids.shape[1] - len(own) :] = torch.tensor(own)
                mask[b, input_ids.shape[1] - len(own) :] = 1
            cache = None
            if prefix_cache is not None:
                cache = copy.deepcopy(prefix_cache)
                cache.batch_repeat_interleave(len(batch))
            new = self._decode(
                {"input_ids": input_ids.to(self.device), "attention_mask": mask.to(self.device), "cache": cache},
                [requests[row.index].json_schema for row in batch],
                max(r.max_new_tokens for r in batch),
            )
            for b, row in enumerate(batch):
                yield row.index, self._result(new[b], row.max_new_tokens, len(row.ids))

    def _generate_vision(self, items: list[tuple[int, GenerationRequest]]) -> Iterator:
        """Image-text batches through the processor (images opened per batch; an unreadable one fails its request).
        An image is a file path or a base64 `data:` URL."""
        for start in range(0, len(items), self.batch_size):
            batch = []
            for index, request in items[start : start + self.batch_size]:
                try:
                    batch.append((index, request, [_open_image(image) for image in request.images]))
                except (OSError, ValueError) as err:  # a bad data URL is a ValueError (binascii.Error)
                    yield index, GenerationResult("", "error", f"cannot open image of request {index}: {err}")
            if not batch:
                continue
            images = [images for _, _, images in batch if images]
            with self._tokenizer_lock:
                prompts = [self._prompt_text(request) for _, request, _ in batch]
                inputs = self.processor(text=prompts, images=images or None, padding=True, return_tensors="pt")
            schemas = [request.json_schema for _, request, _ in batch]
            new = self._decode(inputs.to(self.device), schemas, max(r.max_new_tokens for _, r, _ in batch))
            for b, (index, request, _) in enumerate(batch):
                prompt_tokens = int(inputs["attention_mask"][b].sum())
                yield index, self._result(new[b], request.max_new_tokens, prompt_tokens)

    def _decode(self, inputs: dict, schemas: list[dict | None], max_new_tokens: int) -> torch.Tensor:
        """Greedy generation, each row held to its schema (all rows have one, or none has); returns only the new
        tokens (batch, <= max_new_tokens)."""
        processors = []
        if schemas[0] is not None and self.constrain:
            from xgrammar.contrib.hf import LogitsProcessor as GrammarProcessor

            grammars = [self._grammar(schema) for schema in schemas]
            processors.append(GrammarProcessor(grammars))  # one per call: it keeps matcher state
            processors.append(_BanTokens(self._control_tokens))
        config = GenerationConfig(
            max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=self.eos_ids, pad_token_id=self.pad_id
        )
        prompt_len = inputs["input_ids"].shape[1]
        with torch.inference_mode():
            out = self.lm.generate(**inputs, generation_config=config, logits_processor=processors)
        return out[:, prompt_len:].cpu()

    def _result(self, tokens: torch.Tensor, max_new_tokens: int, prompt_tokens: int) -> GenerationResult:
        """Text up to the first EOS; "length" when none came within the request's own `max_new_tokens`."""
        tokens = tokens[:max_new_tokens].tolist()
        stop = next((k for k, t in enumerate(tokens) if t in self.eos_ids), None)
        with self._tokenizer_lock:
            text = self.tokenizer.decode(tokens[:stop], skip_special_tokens=True)
        return GenerationResult(
            text=text,
            finish_reason="length" if stop is None else "stop",
            prompt_tokens=prompt_tokens,
            completion_tokens=len(tokens[:stop]),
        )

    def _prompt_text(self, request: GenerationRequest) -> str:
        """The request's chat-templated prompt (for an image-text model: with an image slot per image)."""
        if self.vision:
            messages = _multimodal(request.messages, len(request.images))
            return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tokenizer.apply_chat_template(list(request.messages), tokenize=False, add_generation_prompt=True)

    def _prompt_ids(self, request: GenerationRequest) -> list[int]:
        with self._tokenizer_lock:
            return self.tokenizer(self._prompt_text(request), add_special_tokens=False)["input_ids"]

    def _shared_prefix_length(self, prompts: list[list[int]]) -> int:
        """Length of the prompts' common token prefix, at least one token short of the shortest prompt; 0 when
        reuse is off, the group has one prompt, or the prefix is too short to pay for its separate pass."""
        if not self.reuse_prefix or len(prompts) < 2:
            return 0
        first, length = prompts[0], min(len(p) for p in prompts) - 1
        for other in prompts[1:]:
            length = next((k for k in range(length) if other[k] != first[k]), length)
        return length if length >= self.min_prefix_tokens else 0

    def _prefill(self, prefix: list[int]) -> DynamicCache | None:
        """The model's cache after reading `prefix` (one row), copied and repeated for each batch; None for caches
        that cannot continue behind padded rows (sliding windows, recurrent states), which then read prompts whole."""
        with torch.inference_mode():
            cache = self.lm(torch.tensor([prefix], device=self.device), use_cache=True).cache
        if type(cache) is not DynamicCache or any(cache.is_sliding) or any(cache.is_linear):
            return None
        return cache

    def _grammar(self, schema: dict):
        """The xgrammar grammar of `schema` for this tokenizer, compiled once: compact JSON (", " and ": "
        separators, as in the prompts' examples, no newlines), no extra keys."""
        import xgrammar as xgr

        key = json.dumps(schema, sort_keys=True)
        with self._grammar_lock:
            if key not in self._grammars:
                if self._grammar_compiler is None:
                    vocab_size = self.lm.get_output_embeddings().weight.shape[0]
                    info = xgr.TokenizerInfo.from_huggingface(
                        self.tokenizer, vocab_size=vocab_size, stop_token_ids=self.eos_ids
                    )
                    self._grammar_compiler = xgr.GrammarCompiler(info, max_threads=max(1, torch.get_num_threads()))
                    # xgrammar's grammar for a string with maxLength lets raw control characters through, which JSON
                    # forbids; compact JSON never contains one, so tokens holding any are banned outright
                    control = [k for k, piece in enumerate(info.decoded_vocab) if any(byte < 0x20 for byte in piece)]
                    self._control_tokens = torch.tensor(control, dtype=torch.long)
                self._grammars[key] = self._grammar_compiler.compile_json_schema(
                    json.dumps(schema), any_whitespace=False, strict_mode=True
                )
            return self._grammars[key]

    # ----- scoring -----
    def loglikelihood(self, pairs: Sequence[tuple[str, str]], *, chat: bool = False) -> list[float]:
        """Sum of log p(continuation tokens | context tokens) for each (context, continuation), batched.

        Context and continuation are tokenized separately and joined, so the continuation's tokens are the same
        whatever the context. `chat=True` wraps the context as a user turn of the chat template and scores the
        continuation as the start of the assistant's answer.
        """
        encoded = []
        for n, (context, continuation) in enumerate(pairs):
            if chat:
                context = self.tokenizer.apply_chat_template(
                    [{"role": "user", "content": context}], tokenize=False, add_generation_prompt=True
                )
                ctx_ids = self.tokenizer(context, add_special_tokens=False)["input_ids"]
            else:
                ctx_ids = self.tokenizer(context)["input_ids"]
            cont_ids = self.tokenizer(continuation, add_special_tokens=False)["input_ids"]
            if not ctx_ids or not cont_ids:
                empty = "context" if not ctx_ids else "continuation"
                raise ValueError(f"loglikelihood pair {n}: the {empty} has no tokens; give it some text")
            encoded.append((n, ctx_ids + cont_ids, len(cont_ids)))
        scores = [0.0] * len(encoded)
        encoded.sort(key=lambda e: len(e[1]))
        for start in range(0, len(encoded), self.batch_size):
            batch = encoded[start : start + self.batch_size]
            for n, score in zip((e[0] for e in batch), self._score_batch(batch), strict=True):
                scores[n] = score
        return scores

    def _score_batch(self, batch: list[tuple[int, list[int], int]]) -> list[float]:
        """Left-padded forward; only the last (longest continuation + 1) positions' logits are computed."""
        length = max(len(ids) for _, ids, _ in batch)
        keep = max(c for _, _, c in batch) + 1
        input_ids = torch.full((len(batch), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        for b, (_, ids, _) in enumerate(batch):
            input_ids[b, length - len(ids) :] = torch.tensor(ids)
            mask[b, length - len(ids) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            logits = self.lm(
                input_ids=input_ids.to(self.device),
                attention_mask=mask.to(self.device),
                position_ids=positions.to(self.device),
                logits_to_keep=keep,
            ).logits
        logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1).cpu()  # predicts the last keep-1 tokens
        targets = input_ids[:, length - keep + 1 :]
        token_lp = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (batch, keep - 1)
        return [token_lp[b, keep - 1 - c :].sum().item() for b, (_, _, c) in enumerate(batch)]


class _BanTokens(LogitsProcessor):
    """Sets the scores of `token_ids` to -inf at every step."""

    def __init__(self, token_ids: torch.Tensor) -> None:
        self.token_ids = token_ids

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores[:, self.token_ids.to(scores.device)] = float("-inf")
        return scores


def _open_image(image: str):
    """A PIL RGB image from a file path or a base64 `data:` URL (what the chat server receives)."""
    from PIL import Image

    if image.startswith("data:"):
        header, _, payload = image.partition(",")
        if not header.endswith(";base64"):
            raise ValueError(f"a data URL image must be base64-encoded, got {header[:40]!r}")
        return Image.open(io.BytesIO(base64.b64decode(payload, validate=True))).convert("RGB")
    return Image.open(image).convert("RGB")


def _multimodal(messages: tuple[dict, ...], n_images: int) -> list[dict]:
    """Chat messages in the processor format, with `n_images` image slots before the last user turn's text."""
    last_user = max(k for k, m in enumerate(messages) if m["role"] == "user")
    out = []
    for k, message in enumerate(messages):
        content = [{"type": "text", "text": message["content"]}]
        if k == last_user:
            content = [{"type": "image"}] * n_images + content
        out.append({"role": message["role"], "content": content})
    return out


def _load(name: str, path: str, gguf_file: str | None, *, device: torch.device, dtype, trust_remote_code: bool):
    """(model, tokenizer or processor) of `path` (resolved from `name`); image-text-to-text configs load with a
    processor, GGUF files are dequantized."""
    if gguf_file and importlib.util.find_spec("gguf") is None:
        raise ConfigError(
            f"LocalBackend model {name!r}: reading {gguf_file} needs the `gguf` package (pip install gguf)"
        )
    try:
        if gguf_file:
            tokenizer = AutoTokenizer.from_pretrained(path, gguf_file=gguf_file)
            lm = AutoModelForCausalLM.from_pretrained(
                path, gguf_file=gguf_file, quantization_config=GgufConfig(dequantize=True), dtype=dtype
            )
            return lm.to(device), tokenizer
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        auto_dtype = dtype or (torch.float32 if device.type == "cpu" else "auto")
        if config.model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
            processor = AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
            lm = AutoModelForImageTextToText.from_pretrained(
                path, dtype=auto_dtype, trust_remote_code=trust_remote_code
            )
            return lm.to(device), processor
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        lm = AutoModelForCausalLM.from_pretrained(path, dtype=auto_dtype, trust_remote_code=trust_remote_code)
        return lm.to(device), tokenizer
    except OSError as err:
        offline = f"install its offline copy (`{SMOLLM2_INSTALL}`), " if name == SMOLLM2_ID else ""
        raise ConfigError(
            f"LocalBackend model {name!r} could not be loaded ({err}); {offline}pass a local folder, or a Hub id "
            "on a machine that can reach the Hub"
        ) from None
