"""Second training stage: GRPO with constrained rollouts and the QARM / interest-aware rewards."""

from deepinterestgr.rl.arguments import REWARDS, GRPOArguments
from deepinterestgr.rl.grpo import GRPOResult, build_rewards, grpo_dataset, train_grpo
from deepinterestgr.rl.rewards import (
    ExactMatchReward,
    InterestReward,
    PrefixReward,
    QualityBonusReward,
    RankReward,
    SIDReward,
    ValidityReward,
    parse_sid,
)
from deepinterestgr.rl.rollout import ConstrainedBeamRollout

__all__ = [
    "REWARDS",
    "ConstrainedBeamRollout",
    "ExactMatchReward",
    "GRPOArguments",
    "GRPOResult",
    "InterestReward",
    "PrefixReward",
    "QualityBonusReward",
    "RankReward",
    "SIDReward",
    "ValidityReward",
    "build_rewards",
    "grpo_dataset",
    "parse_sid",
    "train_grpo",
]
