"""Dataset readers shared by training and evaluation."""

from .bsds import BSDSSample, find_bsds_root, load_bsds

__all__ = ["BSDSSample", "find_bsds_root", "load_bsds"]
