"""Token-Superposition Training (TST) for the Hugging Face training stack."""

from .config import TSTConfig
from .data import PhasedBlockStream, TSTDataCollator
from .errors import UsageError
from .loss import bag_weights, linear_multi_hot_cross_entropy, multi_hot_cross_entropy
from .parser import TSTParser
from .superpose import EmbeddingSuperposition, superpose_embeddings
from .trainer import TSTTrainer

__all__ = [
    "EmbeddingSuperposition",
    "PhasedBlockStream",
    "TSTConfig",
    "TSTDataCollator",
    "TSTParser",
    "TSTTrainer",
    "UsageError",
    "bag_weights",
    "linear_multi_hot_cross_entropy",
    "multi_hot_cross_entropy",
    "superpose_embeddings",
]
__version__ = "0.1.0"
