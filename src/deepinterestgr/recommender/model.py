"""`GenerativeRecommender`: a causal LM with SID tokens, its tokenizer and the catalogue's `SemanticIDMap`."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import cached_file

from deepinterestgr.errors import ConfigError, DataError
from deepinterestgr.recommender.arguments import PROMPT_ATTENTION, SID_SOFTMAX
from deepinterestgr.recommender.beam_search import BeamSearchOutput, sid_beam_search
from deepinterestgr.recommender.constrained import SIDTrie
from deepinterestgr.recommender.tasks import PromptTemplates
from deepinterestgr.recommender.tokens import sid_paths
from deepinterestgr.sid.semantic_ids import MAP_FILE, SemanticIDMap

CONFIG_FILE = "recommender_config.json"


@dataclass(frozen=True)
class Recommendation:
    item_id: str
    score: float  # length-normalised log-probability of the item's SID


class GenerativeRecommender:
    """Recommends by generating SIDs under catalogue constraints; every result is a real catalogue item."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        sid_map: SemanticIDMap,
        *,
        max_history: int = 20,
        templates: PromptTemplates | None = None,
        prompt_attention: str = "causal",
        sid_softmax: str = "vocabulary",
    ):
        if prompt_attention not in PROMPT_ATTENTION:
            raise ConfigError(
                f"prompt_attention must be one of {', '.join(PROMPT_ATTENTION)}, got {prompt_attention!r}"
            )
        if sid_softmax not in SID_SOFTMAX:
            raise ConfigError(f"sid_softmax must be one of {', '.join(SID_SOFTMAX)}, got {sid_softmax!r}")
        self.sid_softmax = sid_softmax
        self.model = model.eval()
        self.prompt_attention = prompt_attention
        self.tokenizer = tokenizer
        self.sid_map = sid_map
        self.max_history = max_history
        self.templates = templates or PromptTemplates()
        vocab = model.get_input_embeddings().weight.shape[0]
        self.trie = SIDTrie(sid_paths(sid_map, tokenizer), vocab_size=vocab)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def prompts(self, histories: list[list[str]]) -> list[str]:
        """Prompt text of each history (last `max_history` items); unknown item ids are an error."""
        for n, history in enumerate(histories):
            if not history:
                raise DataError(f"history {n} is empty; give at least one item id")
            missing = next((i for i in history if i not in self.sid_map), None)
            if missing is not None:
                raise DataError(
                    f"history {n}: item {missing!r} is not in this recommender's catalogue "
                    f"({len(self.sid_map):,} items); drop it or retrain with it"
                )
        return [self.templates.render_history(self.sid_map, h[-self.max_history :]) for h in histories]

    @torch.no_grad()
    def search(
        self, histories: list[list[str]], *, num_beams: int = 20, batch_size: int = 32, exclude_history: bool = False
    ) -> BeamSearchOutput:
        """Catalogue rows and scores of the `num_beams` best items per history (constrained beam search);
        `exclude_history`: never an item of the history itself (all of it, not only the last `max_history`)."""
        prompts = self.prompts(histories)
        trie = self.trie.to(self.device)
        outputs = []
        padding_side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"
        try:
            for start in range(0, len(prompts), batch_size):
                encoded = self.tokenizer(prompts[start : start + batch_size], return_tensors="pt", padding=True)
                exclude = self.history_rows(histories[start : start + batch_size]) if exclude_history else None
                out = sid_beam_search(
                    self.model,
                    encoded["input_ids"].to(self.device),
                    encoded["attention_mask"].to(self.device),
                    trie,
                    eos_token_id=self.tokenizer.eos_token_id,
                    num_beams=num_beams,
                    bidirectional_prompt=self.prompt_attention == "bidirectional",
                    sid_softmax=self.sid_softmax,
                    exclude=exclude,
                )
                outputs.append(out)
        finally:
            self.tokenizer.padding_side = padding_side
        return BeamSearchOutput(
            *(torch.cat([getattr(o, f.name).cpu() for o in outputs]) for f in fields(BeamSearchOutput))
        )

    def history_rows(self, histories: list[list[str]]) -> torch.LongTensor:
        """(len(histories), longest) catalogue rows of each history's items, -1 padded, on the model's device."""
        rows = torch.full((len(histories), max(map(len, histories), default=0)), -1, dtype=torch.long)
        for n, history in enumerate(histories):
            rows[n, : len(history)] = torch.tensor(self.sid_map.rows_of(history), dtype=torch.long)
        return rows.to(self.device)

    def recommend(
        self,
        histories: list[list[str]],
        k: int = 10,
        *,
        num_beams: int = 20,
        batch_size: int = 32,
        exclude_history: bool = False,
    ) -> list[list[Recommendation]]:
        """Top-`k` distinct catalogue items for each history, best first; `exclude_history`: none of the items
        already in the history (for catalogues where users do not buy the same item twice)."""
        if k > num_beams:
            raise ValueError(f"k={k} needs num_beams >= k (got {num_beams})")
        out = self.search(histories, num_beams=num_beams, batch_size=batch_size, exclude_history=exclude_history)
        ids = self.sid_map.item_ids
        return [
            [
                Recommendation(ids[i], float(s))
                for i, s in zip(row_items.tolist(), row_scores.tolist(), strict=True)
                if i >= 0
            ][:k]
            for row_items, row_scores in zip(out.items, out.scores, strict=True)
        ]

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """LM (safetensors), tokenizer, `sid_map.json` and `recommender_config.json` in one folder."""
        path = Path(path)
        self.model.save_pretrained(path, safe_serialization=True)
        self.tokenizer.save_pretrained(path)
        self.sid_map.save(path / MAP_FILE)
        config = {
            "max_history": self.max_history,
            "templates": asdict(self.templates),
            "prompt_attention": self.prompt_attention,
            "sid_softmax": self.sid_softmax,
        }
        (path / CONFIG_FILE).write_text(json.dumps(config, indent=2))
        return path

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | os.PathLike, *, revision: str | None = None, device: str | None = None
    ) -> GenerativeRecommender:
        """Load from a folder or a Hub repo id (pin `revision` for reproducibility)."""
        name = str(name_or_path)
        model = AutoModelForCausalLM.from_pretrained(name, revision=revision, use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(name, revision=revision)
        sid_map = SemanticIDMap.load(cached_file(name, MAP_FILE, revision=revision))
        config = json.loads(Path(cached_file(name, CONFIG_FILE, revision=revision)).read_text())
        if device:
            model = model.to(device)
        return cls(
            model,
            tokenizer,
            sid_map,
            max_history=config["max_history"],
            templates=PromptTemplates(**config["templates"]),
            prompt_attention=config.get("prompt_attention", "causal"),  # folders saved before the option: causal
            sid_softmax=config.get("sid_softmax", "vocabulary"),  # and the full softmax
        )

    def push_to_hub(
        self,
        repo_id: str,
        *,
        metrics: dict | str | os.PathLike | None = None,
        allow_missing_metrics: bool = False,
        private: bool | None = None,
        token: str | None = None,
        revision: str | None = None,
        commit_message: str | None = None,
    ):
        """Save to a temporary folder and push it with its model card as ONE commit; returns the `CommitInfo`
        (a str, the commit URL; `.oid` is the sha). `metrics`: the evaluator's metrics.json (path or dict), which
        the card shows; without it the push is refused unless `allow_missing_metrics`. See `deepinterestgr.hub`."""
        from deepinterestgr.hub import push_recommender

        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp)
            return push_recommender(
                tmp,
                repo_id,
                metrics=metrics,
                allow_missing_metrics=allow_missing_metrics,
                private=private,
                token=token,
                revision=revision,
                commit_message=commit_message,
            )
