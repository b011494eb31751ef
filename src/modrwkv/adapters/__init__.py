"""Adapters from encoder features to backbone embeddings: the MLP and the Conv1d token reduction."""

from .conv import ConvMLPAdapter, conv_output_length
from .factory import ADAPTERS, build_adapter
from .mlp import MLPAdapter

__all__ = ["ADAPTERS", "ConvMLPAdapter", "MLPAdapter", "build_adapter", "conv_output_length"]
