"""Constrained GRPO rollouts: the G completions of a prompt are its G best catalogue SIDs by beam search.

TRL's `GRPOConfig.generation_kwargs` refuses logits processors, so this plugs in as TRL's `rollout_func`
(prompts, trainer) -> token ids. Every completion is a distinct, valid catalogue SID (as MiniOneRec's beam
rollouts); the group's diversity comes from the beams, not from sampling temperature.

Which log-probabilities the loss uses: TRL recomputes the policy's own per-token log-probabilities of these
completions (full-vocabulary softmax, no constraint) for the policy ratio and the KL to the reference model.
The `logprobs` returned here are the same quantity as scored inside the beam search; TRL reads them only for
vLLM's importance-sampling correction.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedTokenizerBase

from deepinterestgr.errors import ConfigError
from deepinterestgr.recommender.beam_search import sid_beam_search
from deepinterestgr.recommender.constrained import SIDTrie


class ConstrainedBeamRollout:
    """TRL `rollout_func`: one beam search with G beams per distinct prompt, beam k answers the k-th copy."""

    def __init__(
        self, trie: SIDTrie, paths: torch.LongTensor, tokenizer: PreTrainedTokenizerBase, *, group_size: int,
        sid_softmax: str = "vocabulary",  # as the recommender's beam search ranks (`GenerativeRecommender.sid_softmax`)
    ):  # fmt: skip
        if group_size > trie.num_items:
            raise ConfigError(f"group_size {group_size} is larger than the catalogue ({trie.num_items} items)")
        self.trie, self.paths, self.tokenizer, self.group_size = trie, paths, tokenizer, group_size
        self.sid_softmax = sid_softmax

    def __call__(self, prompts: list[str], trainer) -> dict[str, list]:
        """TRL's hook: completions for this process's prompts with the trainer's current policy."""
        return self.generate(prompts, trainer.accelerator.unwrap_model(trainer.model))

    def generate(self, prompts: list[str], model) -> dict[str, list]:
        """Prompt/completion token ids, per-token log-probabilities and beam rank of every completion, for
        prompts that come as consecutive groups of `group_size` copies."""
        size = self.group_size
        groups = [prompts[i : i + size] for i in range(0, len(prompts), size)]
        if any(len(g) != size or any(p != g[0] for p in g) for g in groups):
            raise ConfigError(
                f"each process must receive whole groups of {size} copies of a prompt; make the per-device batch "
                "a multiple of group_size (GRPOArguments.prompts_per_step * group_size)"
            )
        was_training = model.training
        model.eval()  # no dropout while choosing the completions
        side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"
        try:
            unique = [g[0] for g in groups]
            enc = self.tokenizer(unique, return_tensors="pt", padding=True).to(model.device)
            out = sid_beam_search(
                model,
                enc["input_ids"],
                enc["attention_mask"],
                self.trie.to(model.device),
                eos_token_id=self.tokenizer.eos_token_id,
                num_beams=size,
                sid_softmax=self.sid_softmax,
            )
        finally:
            self.tokenizer.padding_side = side
            model.train(was_training)
        if bool((out.items < 0).any()):
            raise ConfigError(f"beam search found fewer than group_size={size} catalogue items for a prompt")
        prompt_ids, completion_ids, logprobs, ranks = [], [], [], []
        for n, prompt in enumerate(unique):
            ids = self.tokenizer(prompt)["input_ids"]
            for rank, item in enumerate(out.items[n].tolist()):
                path = [t for t in self.paths[item].tolist() if t >= 0]
                prompt_ids.append(ids)
                completion_ids.append(path)
                logprobs.append(out.token_logprobs[n, rank, : len(path)].tolist())
                ranks.append(rank)
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": logprobs, "rollout_rank": ranks}
