"""Automated circuit discovery: find the edges of a model's computational graph that a task
needs, by patching edges (ACDC) or by estimating every edge's effect from gradients (EAP,
EAP-IG).

One module per idea:

- ``graph``: the graph of a HookedTransformer at ACDC's granularity: senders ("embed",
  "a{l}.h{h}", "m{l}"), receivers ("a{l}.h{h}.q"/".k"/".v", "m{l}", "logits"), edges
  ``(sender, receiver)`` and ``edge_count``, their number in closed form.
- ``edge_patching``: run the clean prompts with only some edges kept, the others patched from
  the corrupted run (``patch_edges``, ``EdgePatcher``; one receiver's patched input,
  ``patch_receiver_input``).
- ``acdc``: Conmy et al. (2023)'s greedy pruning (``acdc``, ``acdc_sweep``; its inner loop,
  ``prune_step``; a sweep's ranking, ``sweep_scores`` and ``largest_kept_tau``).
- ``eap``: edge attribution patching (Syed et al. 2023) and its integrated-gradients version
  (Hanna et al. 2024): ``eap``, ``eap_ig``, and their steps ``eap_scores`` and
  ``interpolation_points``.
- ``evaluation``: a ranking of edges against a ground truth (ROC, AUC, precision at k), and a
  circuit against the model (faithfulness by size; Wang et al. 2022's completeness and minimality,
  ``incompleteness`` for one knockout).
- ``planted``: ground truths: a hand-set induction circuit whose edge set is exact, and the
  circuits the course found by hand in ``attn-only-2l`` (Chapter 04) and TinyLang IOI (Chapter 06).

Scores and edge masks are tensors [n_edges] aligned with ``graph.edges``.
"""

from toykit.circuit_discovery.acdc import (
    ACDCResult,
    acdc,
    acdc_sweep,
    largest_kept_tau,
    prune_step,
    sweep_is_nested,
    sweep_scores,
)
from toykit.circuit_discovery.eap import eap, eap_ig, eap_scores, edge_scores, interpolation_points, receiver_gradients
from toykit.circuit_discovery.edge_patching import (
    EdgePatcher,
    graph_switches,
    patch_edges,
    patch_receiver_input,
    sender_outputs,
)
from toykit.circuit_discovery.evaluation import (
    all_subsets,
    faithfulness_curve,
    frontier_auc,
    incompleteness,
    incompleteness_scores,
    minimality_score,
    precision_recall_at_k,
    random_subsets,
    rank_edges,
    roc_auc,
    roc_curve,
)
from toykit.circuit_discovery.graph import CircuitGraph, Edge, Graph, edge_count
from toykit.circuit_discovery.planted import (
    PLANTED_INDUCTION_HEAD,
    PLANTED_PREVIOUS_TOKEN_HEAD,
    GroundTruth,
    PlantedCircuit,
    attn_only_2l_induction_truth,
    induction_logprob,
    induction_predictions,
    planted_induction_circuit,
    tinylang_ioi_prompts,
    tinylang_ioi_truth,
)

__all__ = [
    "ACDCResult",
    "CircuitGraph",
    "Edge",
    "EdgePatcher",
    "Graph",
    "GroundTruth",
    "PLANTED_INDUCTION_HEAD",
    "PLANTED_PREVIOUS_TOKEN_HEAD",
    "PlantedCircuit",
    "acdc",
    "acdc_sweep",
    "all_subsets",
    "attn_only_2l_induction_truth",
    "eap",
    "eap_ig",
    "eap_scores",
    "edge_count",
    "edge_scores",
    "faithfulness_curve",
    "frontier_auc",
    "graph_switches",
    "incompleteness",
    "incompleteness_scores",
    "induction_logprob",
    "induction_predictions",
    "interpolation_points",
    "largest_kept_tau",
    "minimality_score",
    "patch_edges",
    "patch_receiver_input",
    "planted_induction_circuit",
    "precision_recall_at_k",
    "prune_step",
    "random_subsets",
    "rank_edges",
    "receiver_gradients",
    "roc_auc",
    "roc_curve",
    "sender_outputs",
    "sweep_is_nested",
    "sweep_scores",
    "tinylang_ioi_prompts",
    "tinylang_ioi_truth",
]
