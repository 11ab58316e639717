"""Constrained beam-search speed: ours vs `generate(prefix_allowed_tokens_fn=...)` vs the raw-forward floor.

Same model, same users, one run. (a) `sid_beam_search`: prefill once per user, the prompt's keys/values stored
once for all its beams; (a') the same search on the model's standard cache, expanded to the beams.
(b) The peers' way: `model.generate(num_beams=B, prefix_allowed_tokens_fn=fn)` over a Python dict prefix trie.
(c) The floor: one forward over each user's prompt, then L + 1 cached one-token steps over the B beam rows, with
no search logic at all, on the standard cache. Also: agreement of (a) and (b) top-10 lists, and the trie and
users/s at 1,000,000 synthetic items. Times are the best of `--repeats` runs.

Run: `.venv/bin/python benchmarks/decode_speed.py [--users 64] [--beams 20] [--model runs/quickstart/sft]`
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from deepinterestgr.recommender.backbone import BackboneConfig, load_backbone
from deepinterestgr.recommender.beam_search import _forward_kwargs, _output_cache, sid_beam_search
from deepinterestgr.recommender.constrained import SIDTrie
from deepinterestgr.recommender.model import GenerativeRecommender
from deepinterestgr.recommender.tokens import add_sid_tokens, sid_paths
from deepinterestgr.sid import SemanticIDMap


def synthetic_map(items: int, *, levels: int = 3, codebook: int = 256, seed: int = 0) -> SemanticIDMap:
    codes = np.random.default_rng(seed).integers(0, codebook, size=(items, levels))
    return SemanticIDMap.from_codes([f"i{n}" for n in range(items)], codes, codebook_size=codebook)


def dict_trie(paths: torch.Tensor) -> dict[tuple[int, ...], list[int]]:
    """The peers' structure: every prefix (as a tuple) -> allowed next tokens."""
    trie: dict[tuple[int, ...], set[int]] = {}
    for path in paths.tolist():
        path = [t for t in path if t >= 0]
        for d in range(len(path)):
            trie.setdefault(tuple(path[:d]), set()).add(path[d])
    return {k: sorted(v) for k, v in trie.items()}


def peers_generate(model, enc, trie, *, beams, depth, pad_id):
    width = enc["input_ids"].shape[1]

    def allowed(_batch_id, input_ids):
        return trie.get(tuple(input_ids[width:].tolist()), [pad_id])

    out = model.generate(
        **enc,
        num_beams=beams,
        num_return_sequences=beams,
        max_new_tokens=depth,
        do_sample=False,
        prefix_allowed_tokens_fn=allowed,
    )
    return out[:, width:]


@torch.no_grad()
def floor(model, enc, *, beams, steps):
    """Prefill once, then `steps` one-token cached forwards over the beam rows: no masking, no top-k."""
    position = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    out = model(**enc, position_ids=position, use_cache=True)
    cache = _output_cache(out)
    cache.batch_repeat_interleave(beams)
    rows = enc["input_ids"].shape[0] * beams
    attention = enc["attention_mask"].repeat_interleave(beams, 0)
    pos = position[:, -1:].repeat_interleave(beams, 0)
    token = torch.zeros(rows, 1, dtype=torch.long)
    cache_argument = _forward_kwargs(model)[1]
    for _ in range(steps):
        attention = torch.cat([attention, attention.new_ones(rows, 1)], 1)
        pos = pos + 1
        out = model(
            input_ids=token,
            attention_mask=attention,
            position_ids=pos,
            use_cache=True,
            **{cache_argument: cache},
        )
        cache = _output_cache(out)


def timed(fn, repeats: int = 1):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return result, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--beams", type=int, default=20)
    parser.add_argument("--items", type=int, default=12101)
    parser.add_argument("--history", type=int, default=20, help="items per history (3 tokens each)")
    parser.add_argument("--model", default=None, help="a trained GenerativeRecommender folder for agreement")
    parser.add_argument("--batch", type=int, default=32, help="users per batch")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method (best is kept)")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"machine: {platform.machine()}, torch threads {torch.get_num_threads()}, cuda={torch.cuda.is_available()}")

    if args.model:
        rec = GenerativeRecommender.from_pretrained(args.model)
        sid_map, model, tokenizer = rec.sid_map, rec.model, rec.tokenizer
        label = f"trained model {args.model}"
    else:
        sid_map = synthetic_map(args.items)
        model, tokenizer = load_backbone(
            BackboneConfig(hidden_size=256, num_layers=4, num_heads=4, intermediate_size=512, dropout=0.0)
        )
        add_sid_tokens(model, tokenizer, sid_map)
        rec = GenerativeRecommender(model, tokenizer, sid_map, max_history=args.history)
        label = "random-weight Llama"
    model.eval()
    params = sum(p.numel() for p in model.parameters())
    rng = np.random.default_rng(1)
    histories = [list(rng.choice(sid_map.item_ids, size=args.history)) for _ in range(args.users)]
    prompts = rec.prompts(histories)
    tokenizer.padding_side = "left"
    paths = sid_paths(sid_map, tokenizer)
    trie = rec.trie
    peer_trie = dict_trie(paths)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    batches = [
        tokenizer(prompts[i : i + args.batch], return_tensors="pt", padding=True)
        for i in range(0, len(prompts), args.batch)
    ]
    print(
        f"{label}: {params / 1e6:.2f}M parameters, {len(sid_map):,} items, {args.users} users, "
        f"{batches[0]['input_ids'].shape[1]}-token prompts, beam {args.beams}, batches of {args.batch}"
    )

    def search(trie, shared=None):
        return [
            sid_beam_search(
                model,
                b["input_ids"],
                b["attention_mask"],
                trie,
                eos_token_id=eos,
                num_beams=args.beams,
                shared_prefix=shared,
            )
            for b in batches
        ]

    ours, t_ours = timed(lambda: search(trie), args.repeats)
    expanded, t_expanded = timed(lambda: search(trie, shared=False), args.repeats)
    peers, t_peers = timed(
        lambda: [peers_generate(model, b, peer_trie, beams=args.beams, depth=trie.depth, pad_id=pad) for b in batches],
        args.repeats,
    )
    _, t_floor = timed(lambda: [floor(model, b, beams=args.beams, steps=trie.depth - 1) for b in batches], args.repeats)
    same_expanded = sum(a.items.tolist() == b.items.tolist() for a, b in zip(ours, expanded, strict=True))

    same = 0
    for batch_out, generated in zip(ours, peers, strict=True):
        for n in range(batch_out.items.shape[0]):
            rows = generated[n * args.beams : (n + 1) * args.beams]
            texts = tokenizer.batch_decode(rows, skip_special_tokens=True)
            peer_items = [sid_map.item_for_tokens(t.replace(" ", "")) for t in texts][:10]
            our_items = [sid_map.item_ids[i] for i in batch_out.items[n].tolist()[:10] if i >= 0]
            same += peer_items == our_items
    print("| method | seconds | users/s | vs ours |")
    print("|---|---|---|---|")
    for name, t in [
        ("(a) ours: sid_beam_search", t_ours),
        ("(a') ours on the standard (expanded) cache", t_expanded),
        ("(b) generate + prefix_allowed_tokens_fn", t_peers),
        ("(c) floor: raw cached forwards", t_floor),
    ]:
        print(f"| {name} | {t:.2f} | {args.users / t:.1f} | {t / t_ours:.2f}x |")
    print(f"same top-10 as (b): {same}/{args.users} users ({same / args.users:.1%})")
    print(f"(a) and (a') identical rankings: {same_expanded}/{len(batches)} batches")

    big = synthetic_map(1_000_000, seed=2)
    add_sid_tokens(model, tokenizer, big)  # same model; adds only the suffix tokens the big catalogue needs
    start = time.perf_counter()
    big_trie = SIDTrie(sid_paths(big, tokenizer), vocab_size=model.get_input_embeddings().weight.shape[0])
    build = time.perf_counter() - start
    _, t_small = timed(lambda: search(trie), args.repeats)  # again, right beside the 1M-item run
    _, t_big = timed(lambda: search(big_trie), args.repeats)
    print(
        f"1,000,000 items: trie {big_trie.nbytes() / 2**20:.0f} MiB, built in {build:.1f} s; "
        f"(a) {args.users / t_big:.1f} users/s vs {args.users / t_small:.1f} at {len(sid_map):,} items"
    )


if __name__ == "__main__":
    main()
