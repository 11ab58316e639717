"""The Gradio Space's logic (spaces/deepinterestgr/app.py is its layout): data loading, Recommend, SID explorer,
Mine. Every function here is plain Python over `SpaceData`, so it is tested without a browser."""

from deepinterestgr.space.data import HeldOutUser, InputError, ItemInfo, SpaceData, load_from_env, load_hub, load_run
from deepinterestgr.space.mine import Miner

__all__ = ["HeldOutUser", "InputError", "ItemInfo", "Miner", "SpaceData", "load_from_env", "load_hub", "load_run"]
