"""Average a Beauty recommender's weights with those of a later Trainer checkpoint of the same run.

`beauty_quality.py` keeps the best checkpoint on the valid subset in `best/` and the Trainer's last one in
`work/checkpoints/checkpoint-N/`. This writes a recommender folder whose weights are `(1 - w) * best + w * last`:
`--weight 0.5` averages the two (a two-point stochastic weight average), `--weight 1` is the last checkpoint alone,
ready for `beauty_diagnostics.py`.

Run: `.venv/bin/python benchmarks/average_weights.py runs/beauty/ours-seed42-TAG/best
runs/beauty/ours-seed42-TAG/work/checkpoints/checkpoint-3700 runs/beauty/ours-seed42-TAG/avg --weight 0.5`
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from safetensors.torch import load_file

from deepinterestgr.recommender.model import GenerativeRecommender


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("best", type=Path, help="a GenerativeRecommender folder")
    parser.add_argument("checkpoint", type=Path, help="a Trainer checkpoint folder of the same run (model.safetensors)")
    parser.add_argument("out", type=Path, help="where the averaged recommender goes")
    parser.add_argument("--weight", type=float, default=0.5, help="the checkpoint's share, in [0, 1]")
    args = parser.parse_args()
    if not 0 <= args.weight <= 1:
        parser.error(f"--weight must be in [0, 1], got {args.weight}")
    rec = GenerativeRecommender.from_pretrained(args.best)
    later = load_file(str(args.checkpoint / "model.safetensors"))
    seen = set()  # a tied output head shares its tensor with the embedding: average it once
    with torch.no_grad():
        for name, tensor in rec.model.state_dict().items():
            if tensor.data_ptr() in seen or not tensor.is_floating_point():
                continue
            seen.add(tensor.data_ptr())
            if name not in later:
                parser.error(f"{args.checkpoint / 'model.safetensors'} has no tensor {name!r}: not the same model")
            tensor.lerp_(later[name].to(tensor.dtype), args.weight)
    print(f"averaged {len(seen)} tensors into {rec.save_pretrained(args.out)}")


if __name__ == "__main__":
    main()
