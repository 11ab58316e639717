"""Per-user chronological leave-last-out splits (train = all but last two, valid = penultimate, test = last)."""

from __future__ import annotations

from datasets import Dataset, DatasetDict, Features, Value
from datasets import List as ListFeature

MIN_SEQUENCE_LENGTH = 3  # one training item, one validation target, one test target
TRAIN_FEATURES = Features({"user_id": Value("string"), "item_ids": ListFeature(Value("string"))})
EVAL_FEATURES = Features(
    {"user_id": Value("string"), "history": ListFeature(Value("string")), "target": Value("string")}
)


def leave_last_out(sequences: Dataset, *, max_history: int | None = None) -> DatasetDict:
    """Split each user's sequence by time.

    `train` keeps the full training prefix (later stages slide windows over it); `valid` and `test` rows hold the
    history before the target, cut to the last `max_history` items when given. Users with fewer than
    `MIN_SEQUENCE_LENGTH` items cannot be split and are left out (the prepare stats report how many).
    """
    if max_history is not None and max_history < 1:
        raise ValueError(f"max_history must be >= 1 or None, got {max_history}")

    def cut(history: list[str]) -> list[str]:
        return history[-max_history:] if max_history else history

    train: dict[str, list] = {"user_id": [], "item_ids": []}
    valid: dict[str, list] = {"user_id": [], "history": [], "target": []}
    test: dict[str, list] = {"user_id": [], "history": [], "target": []}
    for user, seq in zip(sequences["user_id"], sequences["item_ids"], strict=True):
        if len(seq) < MIN_SEQUENCE_LENGTH:
            continue
        train["user_id"].append(user)
        train["item_ids"].append(seq[:-2])
        valid["user_id"].append(user)
        valid["history"].append(cut(seq[:-2]))
        valid["target"].append(seq[-2])
        test["user_id"].append(user)
        test["history"].append(cut(seq[:-1]))
        test["target"].append(seq[-1])
    return DatasetDict(
        {
            "train": Dataset.from_dict(train, features=TRAIN_FEATURES),
            "valid": Dataset.from_dict(valid, features=EVAL_FEATURES),
            "test": Dataset.from_dict(test, features=EVAL_FEATURES),
        }
    )
