"""Automated circuit discovery: find the edges of a model's computational graph that a task
needs, by patching edges (ACDC) or by estimating every edge's effect from gradients (EAP,
EAP-IG).

One module per idea:

- ``graph``: the graph of a HookedTransformer at ACDC's granularity: senders ("embed",
  "a{l}.h{h}", "m{l}"), receivers ("a{l}.h{h}.q"/".k"/".v", "m{l}", "logits"), edges
  ``(sender, receiver)`` and ``edge_count``, their number in closed form.
- ``edge_patching``: run the clean prompts with only some edges kept, the others patched from
  the corrupted run (``patch_edges``, ``EdgePatcher``).
- ``acdc``: Conmy et al. (2023)'s greedy pruning (``acdc``, ``acdc_sweep``).
- ``eap``: edge attribution patching (Syed et al. 2023) and its integrated-gradients version
  (Hanna et al. 2024): ``eap``, ``eap_ig``.

Scores and edge masks are tensors [n_edges] aligned with ``graph.edges``.
"""

from toykit.circuit_discovery.acdc import ACDCResult, acdc, acdc_sweep
from toykit.circuit_discovery.eap import eap, eap_ig, edge_scores, receiver_gradients
from toykit.circuit_discovery.edge_patching import EdgePatcher, graph_switches, patch_edges, sender_outputs
from toykit.circuit_discovery.graph import CircuitGraph, Edge, Graph, edge_count

__all__ = [
    "ACDCResult",
    "CircuitGraph",
    "Edge",
    "EdgePatcher",
    "Graph",
    "acdc",
    "acdc_sweep",
    "eap",
    "eap_ig",
    "edge_count",
    "edge_scores",
    "graph_switches",
    "patch_edges",
    "receiver_gradients",
    "sender_outputs",
]
