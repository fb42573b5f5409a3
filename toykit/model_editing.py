"""Rank-one model editing (ROME): rewrite one fact by changing one MLP's output weights.

Meng et al. 2022 ("Locating and Editing Factual Associations in GPT", Section 3) read an MLP's
output matrix as a linear key-value memory: the hidden activation k (``blocks.{l}.mlp.hook_post``)
at the subject's last token is a key that names the subject, and the MLP's output there,
``k @ W_out + b_out``, is a value that carries facts about it. To change one fact ROME

1. takes the key **k*** = the mean of k at the last subject token over the prompt preceded by
   several short prefixes (Section 3.1, Eq. 3; ``compute_key``);
2. finds a value **v*** by optimising the MLP's output at that position so that the new object
   becomes likely (Eq. 4: the negative log-probability of the new object over the prefixed
   prompts, plus a KL term that keeps the model's other predictions about the subject; here also
   a weight decay on the change, as in the paper's code; ``compute_value``);
3. inserts the pair with the closed-form rank-one update of Section 3.1, Eq. 2:
   W_hat = W + Lambda (C^-1 k*)^T with Lambda = (v* - W k*) / ((C^-1 k*)^T k*), where
   C = K K^T is the uncentred covariance of keys over a corpus (``key_covariance``). It is the
   smallest change (in the norm that C defines) that maps k* to v* exactly.

**Orientation.** toykit, like TransformerLens, stores ``W_out`` as [d_mlp, d_model] and computes
``post @ W_out + b_out``, the transpose of the paper's W [d_model, d_mlp]. So the update is
written ``W_out + outer(C^-1 k*, Lambda)`` with Lambda = (v* - (k* @ W_out + b_out)) /
(k* . C^-1 k*): u = C^-1 k* [d_mlp] is the row direction and Lambda [d_model] the column one.
v* here is the whole MLP output, bias included (``rank_one_update``).

``edit_fact`` does all three steps for one TinyLang fact and returns an edited **copy**
(``toykit.transformer.copy_model``); the model passed in is never changed. ``edit_scores``
measures the edit: efficacy, generalisation, specificity (see its docstring). Two baselines
use the same code: the edit at a layer the causal trace says does not carry the fact
(``layer=``), and the edit written under a random key (``key=``, e.g. the MLP's hidden
activation at some corpus token) instead of k*.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from toykit.causal_tracing import fact_tokens
from toykit.hooks import check_model
from toykit.runtime import eval_mode
from toykit.tasks.tinylang import FACTS, TOKENIZER, Fact, evaluate, filler_text, generate_examples
from toykit.transformer import HookedTransformer, copy_model
from toykit.transformer_inputs import check_tokens
from toykit.validation import check_non_negative_int, check_positive_int, check_positive_number, check_tensor

__all__ = [
    "FactEdit",
    "compute_key",
    "compute_value",
    "edit_fact",
    "edit_scores",
    "generalisation_prefixes",
    "key_covariance",
    "rank_one_update",
    "rome_prefixes",
]


def _check_layer(model: HookedTransformer, layer: object) -> int:
    if model.cfg.attn_only:
        raise ValueError("a rank-one MLP edit needs a model with MLPs; this model is attn_only")
    if not isinstance(layer, int) or isinstance(layer, bool) or not 0 <= layer < model.cfg.n_layers:
        raise ValueError(f"layer must be an int in [0, {model.cfg.n_layers}), got {layer!r}")
    return layer


def _check_positions(name: str, pos: object, tokens: torch.Tensor) -> torch.Tensor:
    check_tensor(name, pos, [tokens.shape[0]], dtype="int")
    assert isinstance(pos, torch.Tensor)
    if pos.numel() and (pos.min() < 0 or pos.max() >= tokens.shape[1]):
        raise ValueError(f"{name} must lie in [0, {tokens.shape[1]}) (the prompts' positions)")
    return pos.to(tokens.device, torch.long)


# -- the three steps ------------------------------------------------------------------------------


@torch.no_grad()
def key_covariance(model: HookedTransformer, layer: int, tokens: torch.Tensor, batch_size: int = 100) -> torch.Tensor:
    """C = mean over all positions of k k^T, the uncentred covariance [d_mlp, d_mlp] of the MLP's
    hidden activation ``blocks.{layer}.mlp.hook_post`` over a corpus (Section 3.1; the paper uses
    Wikipedia text, a TinyLang chapter uses ``generate_corpus``).

    tokens: [batch, pos] corpus ids; positions holding TinyLang's ``<pad>`` id (0) are left out.
    """
    model = check_model(model, HookedTransformer)
    layer = _check_layer(model, layer)
    tokens = check_tokens(model, tokens)
    check_positive_int("batch_size", batch_size)
    name = f"blocks.{layer}.mlp.hook_post"
    total = torch.zeros(model.cfg.d_mlp, model.cfg.d_mlp, device=tokens.device)
    n = 0
    for start in range(0, tokens.shape[0], batch_size):
        chunk = tokens[start:start + batch_size]
        _, cache = model.run_with_cache(chunk, names_filter=name, stop_at_layer=layer + 1)
        k = cache[name][chunk != TOKENIZER.pad_token_id].float()  # [n_keys, d_mlp]
        total += k.T @ k
        n += k.shape[0]
    if n == 0:
        raise ValueError("tokens must contain at least one non-<pad> position")
    return total / n


@torch.no_grad()
def compute_key(model: HookedTransformer, layer: int, tokens: torch.Tensor, subject_pos: torch.Tensor) -> torch.Tensor:
    """k*: the mean of ``blocks.{layer}.mlp.hook_post`` at each prompt's last subject token [d_mlp].

    tokens: [n, pos] the fact prompt behind n prefixes (right-padded); subject_pos: [n] ints.
    """
    model = check_model(model, HookedTransformer)
    layer = _check_layer(model, layer)
    tokens = check_tokens(model, tokens)
    subject_pos = _check_positions("subject_pos", subject_pos, tokens)
    name = f"blocks.{layer}.mlp.hook_post"
    _, cache = model.run_with_cache(tokens, names_filter=name, stop_at_layer=layer + 1)
    rows = torch.arange(tokens.shape[0], device=tokens.device)
    return cache[name][rows, subject_pos].float().mean(0)


def compute_value(
    model: HookedTransformer,
    layer: int,
    tokens: torch.Tensor,
    subject_pos: torch.Tensor,
    answer_pos: torch.Tensor,
    new_object_id: int,
    *,
    preserve_tokens: torch.Tensor | None = None,
    preserve_subject_pos: torch.Tensor | None = None,
    preserve_answer_pos: torch.Tensor | None = None,
    kl_weight: float = 0.3,
    weight_decay: float = 0.1,
    steps: int = 50,
    lr: float = 0.5,
) -> torch.Tensor:
    """v*: the MLP output [d_model] at the last subject token that makes the new object win.

    The output ``blocks.{layer}.hook_mlp_out`` at ``subject_pos`` is *replaced* by one vector z in
    every prompt (Eq. 4), and z is trained with Adam (``steps``, ``lr``; the paper's code uses
    20 steps at 0.5 for GPT-2 XL, TinyLang needs about 50) from the mean clean output z0 to
    minimise

        mean_i -log P(new object | tokens_i at answer_pos_i)
        + kl_weight * mean_j KL(P_orig || P_z) at the preserve prompts' answer positions
        + weight_decay * |z - z0|^2 / |z0|^2.

    tokens: [n, pos], subject_pos, answer_pos: [n] ints (the prompt behind n prefixes).
    preserve_*: prompts about the same subject whose predictions must not move (the paper's
        "essence" prompt "{subject} is a"); all three or none.
    Only z is trained; the model's weights are not touched (they are frozen for the call).
    """
    model = check_model(model, HookedTransformer)
    layer = _check_layer(model, layer)
    tokens = check_tokens(model, tokens)
    subject_pos = _check_positions("subject_pos", subject_pos, tokens)
    answer_pos = _check_positions("answer_pos", answer_pos, tokens)
    d_vocab = model.cfg.d_vocab
    if not isinstance(new_object_id, int) or isinstance(new_object_id, bool) or not 0 <= new_object_id < d_vocab:
        raise ValueError(f"new_object_id must be an int token id in [0, {model.cfg.d_vocab}), got {new_object_id!r}")
    given = [x is not None for x in (preserve_tokens, preserve_subject_pos, preserve_answer_pos)]
    if any(given) and not all(given):
        raise ValueError("preserve_tokens, preserve_subject_pos and preserve_answer_pos go together: give all or none")
    check_positive_int("steps", steps)
    check_positive_number("lr", lr)
    for name, value in (("kl_weight", kl_weight), ("weight_decay", weight_decay)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
            raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    hook_name = f"blocks.{layer}.hook_mlp_out"

    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=hook_name)
        rows = torch.arange(tokens.shape[0], device=tokens.device)
        z0 = cache[hook_name][rows, subject_pos].float().mean(0)
        p_tokens = p_subj = p_ans = p_rows = None
        if preserve_tokens is not None:
            p_tokens = check_tokens(model, preserve_tokens, name="preserve_tokens")
            p_subj = _check_positions("preserve_subject_pos", preserve_subject_pos, p_tokens)
            p_ans = _check_positions("preserve_answer_pos", preserve_answer_pos, p_tokens)
            p_rows = torch.arange(p_tokens.shape[0], device=p_tokens.device)
            orig_logp = model(p_tokens)[p_rows, p_ans].float().log_softmax(-1)

    # One batch: the edit prompts first, then the preserve prompts (padded to one width).
    n = tokens.shape[0]
    batch, subj = tokens, subject_pos
    if p_tokens is not None and p_subj is not None:
        width = max(tokens.shape[1], p_tokens.shape[1])
        batch = torch.cat([F.pad(t, (0, width - t.shape[1]), value=TOKENIZER.pad_token_id) for t in (tokens, p_tokens)])
        subj = torch.cat([subject_pos, p_subj])
    all_rows = torch.arange(batch.shape[0], device=batch.device)
    z = z0.clone().requires_grad_(True)

    def put(act: torch.Tensor, hook: Any) -> torch.Tensor:
        out = act.clone()
        out[all_rows, subj] = z.to(act.dtype)
        return out

    opt = torch.optim.Adam([z], lr=lr)
    requires = [p.requires_grad for p in model.parameters()]
    # enable_grad: z is optimised by gradient descent even when the caller turned gradients off
    # (notebooks often run under torch.set_grad_enabled(False)).
    with eval_mode(model), torch.enable_grad():
        try:
            for p in model.parameters():
                p.requires_grad_(False)
            for _ in range(steps):
                logits = model.run_with_hooks(batch, fwd_hooks=[(hook_name, put)])
                loss = -logits[rows, answer_pos].float().log_softmax(-1)[:, new_object_id].mean()
                if p_rows is not None and p_ans is not None:
                    logp = logits[n + p_rows, p_ans].float().log_softmax(-1)
                    loss = loss + kl_weight * F.kl_div(logp, orig_logp, log_target=True, reduction="batchmean")
                loss = loss + weight_decay * (z - z0).pow(2).sum() / z0.pow(2).sum().clamp_min(1e-12)
                opt.zero_grad()
                loss.backward()
                opt.step()
        finally:
            for p, r in zip(model.parameters(), requires):
                p.requires_grad_(r)
    return z.detach()


def rank_one_update(W_out: torch.Tensor, b_out: torch.Tensor, C: torch.Tensor, key: torch.Tensor,
                    value: torch.Tensor) -> torch.Tensor:
    """The ROME weights: a new W_out [d_mlp, d_model] with key @ W_new + b_out == value.

    W_out: [d_mlp, d_model] (toykit / TransformerLens orientation), b_out: [d_model],
    C: [d_mlp, d_mlp] the keys' uncentred covariance, key: [d_mlp] (k*), value: [d_model] (v*).
    W_new = W_out + outer(u, Lambda), u = C^-1 key, Lambda = (value - key @ W_out - b_out) / (u . key):
    Section 3.1's Eq. 2 transposed. Other keys k move by (k . u / u . key) Lambda, least for
    keys that C says are common. The inputs are not modified.

    >>> W = torch.zeros(2, 3); C = torch.eye(2)
    >>> W_new = rank_one_update(W, torch.zeros(3), C, torch.tensor([1.0, 0.0]), torch.tensor([1.0, 2.0, 3.0]))
    >>> torch.tensor([1.0, 0.0]) @ W_new, torch.tensor([0.0, 1.0]) @ W_new
    (tensor([1., 2., 3.]), tensor([0., 0., 0.]))
    """
    dims = check_tensor("W_out", W_out, ["d_mlp", "d_model"], dtype="float")
    check_tensor("b_out", b_out, ["d_model"], dtype="float", dims=dims)
    check_tensor("C", C, ["d_mlp", "d_mlp"], dtype="float", dims=dims)
    check_tensor("key", key, ["d_mlp"], dtype="float", dims=dims)
    check_tensor("value", value, ["d_model"], dtype="float", dims=dims)
    u = torch.linalg.solve(C.double(), key.double())  # C^-1 k*, in float64 as C can be ill-conditioned
    denom = (u @ key.double()).item()
    if not denom > 0:
        raise ValueError(f"C must be positive definite along key (got key . C^-1 key = {denom:.3g})")
    residual = value.double() - key.double() @ W_out.double() - b_out.double()
    return (W_out.double() + torch.outer(u, residual) / denom).to(W_out.dtype)


# -- one TinyLang fact ----------------------------------------------------------------------------


def rome_prefixes(n: int, seed: int = 0) -> list[str | None]:
    """The contexts k* and v* are averaged over: no prefix, then n - 1 filler paragraphs
    (``filler_text(n - 1, seed)``), each a document before the fact as in the corpus. The paper
    uses n short texts sampled from the model itself (Section 3.1); filler plays that role here."""
    check_positive_int("n", n)
    return [None, *filler_text(n - 1, seed=seed)]


def generalisation_prefixes(n: int, seed: int = 0) -> list[str]:
    """n contexts for the generalisation score: whole held-out examples of the other TinyLang
    families (test split, answers included), cycling through the families. TinyLang has one
    template per relation, so "the same fact in another context" means the fact prompt after
    another document, which is how facts appear in the training corpus. None of these is a
    ``rome_prefixes`` context (those are filler paragraphs)."""
    check_positive_int("n", n)
    check_non_negative_int("seed", seed)
    families = ("ioi", "agreement", "entity_tracking", "successor", "repeated_span")
    per = 2 * -(-n // len(families))  # twice what is needed: long examples are skipped
    pools = [generate_examples(f, per, seed=seed, split="test") for f in families]
    out: list[str] = []
    for i in range(per):
        for pool in pools:
            # Room for "<bos> ... <eos>" and the longest fact prompt within 64 tokens.
            if len(TOKENIZER.split(pool[i].text)) <= 50 and len(out) < n:
                out.append(pool[i].text)
    return out


def _prompt_batch(fact: Fact, prefixes: Sequence[str | None]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """tokens [n, pos] right-padded with <pad>, subject_pos [n], answer_pos [n]."""
    built = [fact_tokens(fact, prefix) for prefix in prefixes]
    width = max(len(t) for t, _ in built)
    tokens = torch.full((len(built), width), TOKENIZER.pad_token_id, dtype=torch.long)
    for i, (t, _) in enumerate(built):
        tokens[i, :len(t)] = t
    subject = torch.tensor([s for _, s in built])
    answer = torch.tensor([len(t) - 1 for t, _ in built])
    return tokens, subject, answer


def _check_fact(fact: object, new_object: object) -> tuple[Fact, int]:
    if not isinstance(fact, Fact):
        raise TypeError(f"fact must be a tinylang Fact (subject, relation, object), got {type(fact).__name__}")
    if not isinstance(new_object, str) or new_object not in TOKENIZER.token_to_id:
        raise ValueError(f"new_object must be a TinyLang word, got {new_object!r}")
    if new_object == fact.object:
        raise ValueError(f"new_object must differ from the fact's object {fact.object!r}")
    return fact, TOKENIZER.token_to_id[new_object]


@dataclass(frozen=True)
class FactEdit:
    """``edit_fact``'s result: the edited copy, the layer, k* [d_mlp], v* [d_model], and the fact."""

    model: HookedTransformer
    layer: int
    key: torch.Tensor
    value: torch.Tensor
    fact: Fact
    new_object: str


def edit_fact(
    model: HookedTransformer,
    fact: Fact,
    new_object: str,
    layer: int,
    covariance: torch.Tensor,
    *,
    n_prefixes: int = 10,
    preserve: bool = True,
    seed: int = 0,
    key: torch.Tensor | None = None,
    **value_kwargs: Any,
) -> FactEdit:
    """ROME on one TinyLang fact: an edited copy of ``model`` where ``fact`` gives ``new_object``.

    covariance: ``key_covariance(model, layer, corpus_tokens)`` [d_mlp, d_mlp].
    n_prefixes: contexts for k* and v* (``rome_prefixes(n_prefixes, seed)``).
    preserve: keep the subject's *other* facts (its other relations, in the bare prompt) as the
        KL "essence" prompts of ``compute_value``. In TinyLang the key at the subject token sees
        only "<bos> alice", so it is the same for all of alice's relations: without this term
        the edit rewrites what the model says about alice everywhere. These facts are then part
        of the objective, so ``edit_scores`` reports them apart from the other subjects.
    key: None (ROME: k* from ``compute_key``), or a [d_mlp] key to write v* under instead, for
        the random-key baseline: the same update, aimed at a key the prompt does not produce.
    value_kwargs: passed to ``compute_value`` (kl_weight, weight_decay, steps, lr).
    """
    model = check_model(model, HookedTransformer)
    layer = _check_layer(model, layer)
    fact, new_id = _check_fact(fact, new_object)
    check_tensor("covariance", covariance, [model.cfg.d_mlp, model.cfg.d_mlp], dtype="float")
    tokens, subject, answer = _prompt_batch(fact, rome_prefixes(n_prefixes, seed))
    if key is None:
        key = compute_key(model, layer, tokens, subject)
    else:
        check_tensor("key", key, [model.cfg.d_mlp], dtype="float")
    kwargs: dict[str, Any] = {}
    others = [f for f in FACTS if f.subject == fact.subject and f != fact]
    if preserve and others:
        p_tokens, p_subj, p_ans = zip(*(_prompt_batch(f, [None]) for f in others))
        width = max(t.shape[1] for t in p_tokens)
        kwargs = {
            "preserve_tokens": torch.cat([F.pad(t, (0, width - t.shape[1]), value=TOKENIZER.pad_token_id)
                                          for t in p_tokens]),
            "preserve_subject_pos": torch.cat(p_subj),
            "preserve_answer_pos": torch.cat(p_ans),
        }
    value = compute_value(model, layer, tokens, subject, answer, new_id, **kwargs, **value_kwargs)
    edited = copy_model(model)
    mlp = edited.blocks[layer].mlp
    with torch.no_grad():
        new_W = rank_one_update(mlp.W_out.detach(), mlp.b_out.detach(), covariance.to(mlp.W_out.device), key, value)
        mlp.W_out.copy_(new_W)
    return FactEdit(model=edited, layer=layer, key=key, value=value, fact=fact, new_object=new_object)


@torch.no_grad()
def _top1(model: HookedTransformer, facts: Sequence[Fact], prefixes: Sequence[str | None]) -> torch.Tensor:
    """[n_facts, n_prefixes] the top-1 token id at each fact prompt's last position."""
    out = []
    for fact in facts:
        tokens, _, answer = _prompt_batch(fact, prefixes)
        logits = model(tokens.to(model.device))
        out.append(logits[torch.arange(len(answer)), answer.to(model.device)].argmax(-1).cpu())
    return torch.stack(out)


def edit_scores(
    original: HookedTransformer,
    edit: FactEdit,
    *,
    n_contexts: int = 20,
    n_per_family: int = 100,
    seed: int = 0,
) -> dict[str, float]:
    """How well ``edit`` worked, as fractions in [0, 1] (plus the families' accuracy change).

    efficacy: 1.0 if the bare prompt ("<bos> alice lives in") now gives the new object top-1.
    generalisation: the share of ``n_contexts`` other contexts (``generalisation_prefixes``:
        held-out documents of the other families before the prompt, none used to make the edit)
        where the new object is top-1.
    specificity: the share of the other 69 facts (bare prompts) whose top-1 is unchanged from
        ``original``; also ``specificity_other_subjects`` (facts about other subjects, never in
        the edit's objective) and ``specificity_same_subject`` (the subject's other relations,
        NaN for a city, which has one fact).
    family_accuracy_drop: the largest drop in ``evaluate`` accuracy over the five other families
        (``n_per_family`` held-out examples each), original minus edited.
    """
    original = check_model(original, HookedTransformer)
    if not isinstance(edit, FactEdit):
        raise TypeError(f"edit must be a FactEdit (from edit_fact), got {type(edit).__name__}")
    check_positive_int("n_contexts", n_contexts)
    check_positive_int("n_per_family", n_per_family)
    fact, new_id = edit.fact, TOKENIZER.token_to_id[edit.new_object]
    model = edit.model
    efficacy = float(_top1(model, [fact], [None])[0, 0] == new_id)
    general = (_top1(model, [fact], generalisation_prefixes(n_contexts, seed))[0] == new_id).float().mean().item()
    others = [f for f in FACTS if f != fact]
    same = torch.tensor([f.subject == fact.subject for f in others])
    unchanged = (_top1(model, others, [None]) == _top1(original, others, [None]))[:, 0].float()
    families = ["ioi", "agreement", "entity_tracking", "successor", "repeated_span"]
    before = evaluate(original, n_per_family, seed, families=families)
    after = evaluate(model, n_per_family, seed, families=families)
    return {
        "efficacy": efficacy,
        "generalisation": general,
        "specificity": unchanged.mean().item(),
        "specificity_other_subjects": unchanged[~same].mean().item(),
        "specificity_same_subject": unchanged[same].mean().item() if same.any() else float("nan"),
        "family_accuracy_drop": max(before[f]["accuracy"] - after[f]["accuracy"] for f in families),
    }
