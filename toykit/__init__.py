"""toykit: the small library behind an offline, CPU-first course in mechanistic interpretability."""

from toykit.cache import ActivationCache, get_act_name
from toykit.factored_matrix import FactoredMatrix
from toykit.hooks import HookedRootModule, HookPoint
from toykit.runtime import get_device, make_generator, set_seed
from toykit.transformer import HookedTransformer, TransformerConfig

__version__ = "0.1.0"

__all__ = [
    "ActivationCache",
    "FactoredMatrix",
    "HookedTransformer",
    "TransformerConfig",
    "HookPoint",
    "HookedRootModule",
    "get_act_name",
    "get_device",
    "make_generator",
    "set_seed",
    "__version__",
]
