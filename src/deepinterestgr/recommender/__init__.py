"""Generative recommender: a causal LM that generates the next item's semantic ID under catalogue constraints."""

from deepinterestgr.recommender.arguments import BackboneConfig, RecommenderSFTArguments
from deepinterestgr.recommender.beam_search import BeamSearchOutput, sid_beam_search
from deepinterestgr.recommender.constrained import SIDConstrainedLogitsProcessor, SIDTrie
from deepinterestgr.recommender.model import GenerativeRecommender, Recommendation
from deepinterestgr.recommender.sft import SFTResult, train_recommender
from deepinterestgr.recommender.tasks import PromptTemplates, build_sft_dataset
from deepinterestgr.recommender.tokens import add_sid_tokens, sid_paths

__all__ = [
    "BackboneConfig",
    "BeamSearchOutput",
    "GenerativeRecommender",
    "PromptTemplates",
    "Recommendation",
    "RecommenderSFTArguments",
    "SFTResult",
    "SIDConstrainedLogitsProcessor",
    "SIDTrie",
    "add_sid_tokens",
    "build_sft_dataset",
    "sid_beam_search",
    "sid_paths",
    "train_recommender",
]
