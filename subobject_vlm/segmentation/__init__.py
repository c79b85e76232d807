"""Boundary models and boundary -> label map post-processing."""

from .epoc import as_boundary_probs, epoc
from .regions import merge_regions, region_adjacency, relabel_by_area

__all__ = ["as_boundary_probs", "epoc", "merge_regions", "region_adjacency", "relabel_by_area"]
