"""Evaluation: ranking metrics (and, later, full-ranking evaluation of a recommender)."""

from deepinterestgr.evaluation.metrics import evaluate_rankings, hit_rate_at_k, ndcg_at_k, target_ranks

__all__ = ["evaluate_rankings", "hit_rate_at_k", "ndcg_at_k", "target_ranks"]
