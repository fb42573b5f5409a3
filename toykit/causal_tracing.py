"""Causal tracing: which hidden states carry a fact from the subject to the prediction?

Meng et al. 2022 ("Locating and Editing Factual Associations in GPT", Section 2.1) run a
factual prompt ("alice lives in" -> paris) three ways:

1. **clean**: the plain run; P(o) is the probability of the correct object at the last position;
2. **corrupted**: Gaussian noise is added to the embeddings of the subject's tokens, so the model
   no longer knows who the subject is; P*(o) usually collapses. The noise's standard deviation
   is nu = 3 sigma, where sigma is the standard deviation of subject-token embeddings over a
   data set (``noise_scale``);
3. **corrupted-with-restoration**: the corrupted run again, but one hidden state (one layer,
   one position) is set back to its clean value. If P(o) comes back, that state carries what
   the model needs.

The *indirect effect* of a state is P*_restored(o) - P*(o); the *total effect* is P(o) - P*(o).
Results are averaged over several noise samples (the paper uses 10). Besides whole hidden states
(the residual stream), the paper restores the output of one MLP or one attention layer, over a
window of neighbouring layers (10 in GPT-2 XL; ``window`` here), to see which kind of module
does the work at each site (Section 2.1, Figure 1e-f).

``restore_hook(clean_act, positions)`` is the restoration itself, as a hook for one prompt's
corrupted copies; ``causal_trace`` restores every site through it.

toykit names each site by its TransformerLens hook: row 0 of a ``kind="resid"`` trace is
``hook_embed`` (the token embedding, where the noise is added), row l + 1 is
``blocks.{l}.hook_resid_post``; ``kind="mlp"`` and ``"attn"`` have one row per layer,
``blocks.{l}.hook_mlp_out`` / ``hook_attn_out``. Every hook is removed when a call returns or
raises, and no input is modified.

``fact_tokens`` turns a TinyLang fact into a prompt, and ``trace_facts`` traces a list of facts
and averages the grid over position categories (the subject, the first token after it, further
tokens, the last token), as the paper's Figure 2 does for 1000 facts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from toykit.hooks import check_model
from toykit.runtime import make_generator
from toykit.tasks.tinylang import FACTS, RELATIONS, TOKENIZER, Fact
from toykit.transformer import HookedTransformer
from toykit.transformer_inputs import check_token_ids, check_tokens
from toykit.validation import check_non_negative_int, check_one_of, check_positive_int, check_tensor

__all__ = [
    "KINDS",
    "POSITION_CATEGORIES",
    "CausalTrace",
    "FactTrace",
    "causal_trace",
    "fact_tokens",
    "noise_scale",
    "restore_hook",
    "site_names",
    "trace_facts",
]

#: What one restoration sets back to its clean value: a whole hidden state, or one module's output.
KINDS = ("resid", "mlp", "attn")
#: The position categories ``trace_facts`` averages over (TinyLang subjects are one token).
POSITION_CATEGORIES = ("<bos>", "subject", "first subsequent", "further", "last")

HookFn = Callable[[torch.Tensor, Any], torch.Tensor]


@dataclass(frozen=True)
class CausalTrace:
    """The result of ``causal_trace`` on a batch of prompts.

    scores: [batch, n_rows, pos], P(answer) at the last position when the site (row, pos) is
        restored to its clean value in the corrupted run, averaged over the noise samples.
    clean: [batch], P(answer) in the clean run.
    corrupted: [batch], P(answer) in the corrupted run (no restoration), averaged over samples.
    rows: the hook name(s) restored for each row (several with a window > 1).
    kind: "resid", "mlp" or "attn".
    """

    scores: torch.Tensor
    clean: torch.Tensor
    corrupted: torch.Tensor
    rows: tuple[tuple[str, ...], ...]
    kind: str

    @property
    def indirect_effect(self) -> torch.Tensor:
        """[batch, n_rows, pos]: scores minus the corrupted probability (Meng et al.'s IE)."""
        return self.scores - self.corrupted[:, None, None]

    @property
    def total_effect(self) -> torch.Tensor:
        """[batch]: clean minus corrupted probability (Meng et al.'s TE)."""
        return self.clean - self.corrupted


def site_names(model: HookedTransformer, kind: str = "resid", window: int = 1) -> tuple[tuple[str, ...], ...]:
    """The hook names restored for each row of a trace of this ``kind``.

    resid: ``("hook_embed",)``, then ``("blocks.{l}.hook_resid_post",)`` for each layer (n_layers + 1 rows).
    mlp / attn: for row l, ``blocks.{j}.hook_mlp_out`` (or ``hook_attn_out``) for the ``window``
    layers j centred on l, cut at the first and last layer (as in the paper's code).
    """
    check_one_of("kind", kind, KINDS)
    check_positive_int("window", window)
    L = model.cfg.n_layers
    if kind == "resid":
        return (("hook_embed",), *((f"blocks.{l}.hook_resid_post",) for l in range(L)))
    if kind == "mlp" and model.cfg.attn_only:
        raise ValueError("kind='mlp' needs a model with MLPs; this model is attn_only")
    hook = "hook_mlp_out" if kind == "mlp" else "hook_attn_out"
    return tuple(
        tuple(f"blocks.{j}.{hook}" for j in range(max(0, l - window // 2), min(L, l - (-window // 2))))
        for l in range(L)
    )


def _check_mask(subject_mask: object, tokens: torch.Tensor) -> torch.Tensor:
    check_tensor("subject_mask", subject_mask, list(tokens.shape), dtype="bool")
    assert isinstance(subject_mask, torch.Tensor)
    if not subject_mask.any(dim=1).all():
        raise ValueError("subject_mask must mark at least one subject position in every prompt")
    return subject_mask.to(tokens.device)


def noise_scale(model: HookedTransformer, subject_ids: torch.Tensor, multiplier: float = 3.0) -> float:
    """``multiplier`` (the paper's 3) times the standard deviation of the token embeddings
    (what ``hook_embed`` holds) of the subject tokens, over all their entries.

    subject_ids: [n] ints, one entry per subject-token occurrence in a data set (repeats count).
    """
    model = check_model(model, HookedTransformer)
    check_tensor("subject_ids", subject_ids, ["n"], dtype="int")
    if subject_ids.numel() < 1:
        raise ValueError("subject_ids must not be empty")
    check_token_ids(model, subject_ids, "subject_ids")
    if not isinstance(multiplier, (int, float)) or isinstance(multiplier, bool) or not multiplier >= 0:
        raise ValueError(f"multiplier must be a non-negative number, got {multiplier!r}")
    emb = model.W_E.detach()[subject_ids.to(model.W_E.device)]  # [n, d_model]
    return multiplier * emb.float().std().item()


def restore_hook(clean_act: torch.Tensor, positions: int | Sequence[int]) -> HookFn:
    """The restoration of Meng et al. 2022 (Section 2.1): a hook that sets some positions of every
    corrupted copy back to the clean run's value.

    clean_act: [pos, ...], the clean run's activation at this hook point for one prompt.
    positions: an int or a list of ints (negative counts from the end), the positions to restore.
    Returns ``hook_fn(act, hook)``, act [n_copies, pos, ...] (the corrupted runs of that prompt,
    one per noise sample), which returns a NEW tensor equal to act except that
    ``act[:, positions]`` holds ``clean_act[positions]`` in every copy. act is not modified.

    >>> hook = restore_hook(torch.ones(3, 2), 1)
    >>> hook(torch.zeros(2, 3, 2), None)[:, :, 0]
    tensor([[0., 1., 0.],
            [0., 1., 0.]])
    """
    check_tensor("clean_act", clean_act, dtype="float")
    if clean_act.ndim == 0:
        raise ValueError("clean_act must be [pos, ...] with a position axis, got a 0-dim tensor")
    n_pos = clean_act.shape[0]
    listed = [positions] if isinstance(positions, int) else positions
    if isinstance(listed, (str, bytes)) or not isinstance(listed, Sequence) or not listed or not all(
            isinstance(p, int) and not isinstance(p, bool) and -n_pos <= p < n_pos for p in listed):
        raise ValueError(f"positions must be an int or a non-empty list of ints in [-{n_pos}, {n_pos}) "
                         f"(clean_act has {n_pos} positions), got {positions!r}")
    index = [p % n_pos for p in listed]
    clean = clean_act.detach()[index]  # [n_restored, ...]

    def hook_fn(act: torch.Tensor, hook: Any) -> torch.Tensor:
        if act.ndim != clean_act.ndim + 1 or act.shape[1:] != clean_act.shape:
            raise ValueError(f"act must be [n_copies, *clean_act.shape] = [n_copies, "
                             f"{', '.join(map(str, clean_act.shape))}], got {list(act.shape)}")
        out = act.clone()  # a copy: act itself is not modified
        out[:, index] = clean.to(act)
        return out

    return hook_fn


def _answer_prob(logits: torch.Tensor, answer_ids: torch.Tensor) -> torch.Tensor:
    """logits [n, pos, d_vocab], answer_ids [n] -> P(answer) at the last position [n]."""
    probs = logits[:, -1].float().softmax(-1)
    return probs.gather(-1, answer_ids[:, None])[:, 0]


@torch.no_grad()
def causal_trace(
    model: HookedTransformer,
    tokens: torch.Tensor,
    subject_mask: torch.Tensor,
    answer_ids: torch.Tensor,
    *,
    noise: float,
    kind: str = "resid",
    n_samples: int = 10,
    window: int = 1,
    seed: int = 0,
) -> CausalTrace:
    """Trace where the answer's probability is carried: restore one (row, position) at a time.

    tokens: [batch, pos] ints, all prompts the same length (the answer is predicted at the last
        position, as in the paper).
    subject_mask: [batch, pos] bool, True at the subject's tokens: the noise goes there.
    answer_ids: [batch] ints, the correct object for each prompt.
    noise: the noise's standard deviation (``noise_scale``: 3 sigma in the paper); 0 makes the
        corrupted run the clean one, so every score equals the clean probability.
    kind: "resid" (hidden states; rows ``hook_embed``, ``blocks.{l}.hook_resid_post``), "mlp" or
        "attn" (module outputs, over ``window`` layers; see ``site_names``).
    n_samples: noise samples per prompt; each site sees the same samples (seeded by ``seed``).

    Returns a ``CausalTrace`` with scores [batch, n_rows, pos].
    """
    model = check_model(model, HookedTransformer)
    tokens = check_tokens(model, tokens)
    mask = _check_mask(subject_mask, tokens)
    check_tensor("answer_ids", answer_ids, [tokens.shape[0]], dtype="int")
    answer_ids = answer_ids.to(tokens.device, torch.long)
    check_token_ids(model, answer_ids, "answer_ids")
    if not isinstance(noise, (int, float)) or isinstance(noise, bool) or not noise >= 0 or noise == float("inf"):
        raise ValueError(f"noise must be a finite non-negative number, got {noise!r}")
    rows = site_names(model, kind, window)
    check_positive_int("n_samples", n_samples)
    check_non_negative_int("seed", seed)

    B, P = tokens.shape
    names = sorted({name for row in rows for name in row} | {"hook_embed"})
    logits, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
    clean_prob = _answer_prob(logits, answer_ids)
    # Each prompt's clean activations as restore_hook reads them: [pos, batch, d_model].
    clean = {name: cache[name].transpose(0, 1) for name in names}

    # One noise draw [S*B, pos, d_model], zero outside the subject, shared by every site.
    gen = make_generator(seed)
    eps = torch.randn(n_samples * B, P, model.cfg.d_model, generator=gen).to(tokens.device, clean["hook_embed"].dtype)
    eps = eps * noise * mask.repeat(n_samples, 1)[..., None]

    def run(restore: Sequence[str], n_copies: int) -> torch.Tensor:
        """P(answer), averaged over samples, with copy c restoring position c of ``restore``."""
        def hook(act: torch.Tensor, hook: Any) -> torch.Tensor:
            out = act.reshape(n_copies, n_samples * B, P, -1)
            if hook.name == "hook_embed":
                out = out + eps  # a new tensor: act is not modified
            if hook.name in restore:
                # Copy c's noise samples of all prompts, as [samples, pos, batch, d_model]: the
                # prompts' batch axis rides along behind the positions that restore_hook sets.
                copies = [out[c].reshape(n_samples, B, P, -1).transpose(1, 2) for c in range(n_copies)]
                restored = [restore_hook(clean[hook.name], c)(x, hook) for c, x in enumerate(copies)]
                out = torch.stack([x.transpose(1, 2).reshape(n_samples * B, P, -1) for x in restored])
            return out.reshape(act.shape)

        hooked = sorted({"hook_embed", *restore})
        batch = tokens.repeat(n_copies * n_samples, 1)
        out = model.run_with_hooks(batch, fwd_hooks=[(name, hook) for name in hooked])
        probs = _answer_prob(out, answer_ids.repeat(n_copies * n_samples))
        return probs.view(n_copies, n_samples, B).mean(1)  # [n_copies, B]

    corrupted = run((), 1)[0]
    scores = torch.stack([run(row, P).T for row in rows], dim=1)  # [B, n_rows, P]
    return CausalTrace(scores=scores, clean=clean_prob, corrupted=corrupted, rows=rows, kind=kind)


# -- TinyLang facts -------------------------------------------------------------------------------


def fact_tokens(fact: Fact, prefix: str | None = None) -> tuple[torch.Tensor, int]:
    """A fact's prompt as tokens [pos] (``<bos>`` first) and the position of its subject.

    prefix: optional TinyLang text (one or more whole documents) put before the prompt and
        closed with ``<eos>``, as documents are joined in the training corpus: "<bos> the cat
        sleeps. <eos> alice lives in".
    """
    if not isinstance(fact, Fact):
        raise TypeError(f"fact must be a tinylang Fact (subject, relation, object), got {type(fact).__name__}")
    if fact.relation not in RELATIONS:
        raise ValueError(f"fact.relation must be one of {tuple(RELATIONS)}, got {fact.relation!r}")
    ids = [TOKENIZER.bos_token_id]
    if prefix is not None:
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str or None, got {type(prefix).__name__}")
        ids += TOKENIZER.encode(prefix) + [TOKENIZER.eos_token_id]
    subject_pos = len(ids)
    ids += TOKENIZER.encode(" ".join((fact.subject, *RELATIONS[fact.relation])))
    return torch.tensor(ids, dtype=torch.long), subject_pos


@dataclass(frozen=True)
class FactTrace:
    """``trace_facts``'s result.

    scores: [n_rows, n_categories], the restored P(answer) averaged over facts, per position
        category (``POSITION_CATEGORIES``; NaN for a category no prompt has).
    indirect_effect: [n_rows, n_categories], the same minus each fact's corrupted probability.
    clean, corrupted: [n_facts] probabilities, in the order of the facts given.
    traces: one ``CausalTrace`` per relation (prompts of one relation share a length).
    """

    scores: torch.Tensor
    indirect_effect: torch.Tensor
    clean: torch.Tensor
    corrupted: torch.Tensor
    traces: dict[str, CausalTrace]
    rows: tuple[tuple[str, ...], ...]

    def peak(self) -> tuple[int, str]:
        """(row, position category) of the largest average indirect effect. For a "resid" trace
        two sites that restore everything by construction are left out: the subject's embedding
        (row 0, it undoes the noise itself) and the last layer's output at the last position
        (it is the output itself)."""
        ie = torch.nan_to_num(self.indirect_effect, nan=float("-inf")).clone()
        if self.rows[0] == ("hook_embed",):
            ie[0, POSITION_CATEGORIES.index("subject")] = float("-inf")
            ie[-1, POSITION_CATEGORIES.index("last")] = float("-inf")
        flat = ie.argmax().item()
        n_cat = len(POSITION_CATEGORIES)
        return int(flat) // n_cat, POSITION_CATEGORIES[int(flat) % n_cat]


def _categories(n_pos: int, subject_pos: int) -> list[int]:
    """The POSITION_CATEGORIES index of each position of a one-token-subject fact prompt."""
    cats = []
    for p in range(n_pos):
        if p < subject_pos:
            cats.append(0)
        elif p == subject_pos:
            cats.append(1)
        elif p == n_pos - 1:
            cats.append(4)
        elif p == subject_pos + 1:
            cats.append(2)
        else:
            cats.append(3)
    return cats


def trace_facts(
    model: HookedTransformer,
    facts: Sequence[Fact] = FACTS,
    *,
    kind: str = "resid",
    noise: float | None = None,
    n_samples: int = 10,
    window: int = 1,
    seed: int = 0,
) -> FactTrace:
    """Causal-trace TinyLang facts and average the grid over position categories.

    facts: TinyLang facts (default: all 70 of ``FACTS``), traced one relation at a time.
    noise: the noise's standard deviation; None means ``noise_scale`` (3 sigma) over the subject
        tokens of ``facts``.
    Other arguments as in ``causal_trace``. Positions are grouped as in ``POSITION_CATEGORIES``:
    "<bos>", the "subject" (one token in TinyLang), the "first subsequent" token, "further"
    tokens (only "works as a" has one) and the "last" token.
    """
    model = check_model(model, HookedTransformer)
    if isinstance(facts, Fact) or not isinstance(facts, Sequence) or len(facts) == 0:
        raise ValueError("facts must be a non-empty sequence of tinylang Facts")
    prompts = [fact_tokens(f) for f in facts]
    if noise is None:
        noise = noise_scale(model, torch.stack([t[s] for t, s in prompts]))
    n_cat = len(POSITION_CATEGORIES)
    rows = site_names(model, kind, window)
    sums = torch.zeros(len(rows), n_cat)
    ie_sums = torch.zeros(len(rows), n_cat)
    counts = torch.zeros(n_cat)
    clean = torch.zeros(len(facts))
    corrupted = torch.zeros(len(facts))
    traces: dict[str, CausalTrace] = {}
    for relation in RELATIONS:
        idx = [i for i, f in enumerate(facts) if f.relation == relation]
        if not idx:
            continue
        tokens = torch.stack([prompts[i][0] for i in idx])
        subject = prompts[idx[0]][1]
        mask = torch.zeros_like(tokens, dtype=torch.bool)
        mask[:, subject] = True
        answers = torch.tensor([TOKENIZER.token_to_id[facts[i].object] for i in idx])
        tr = causal_trace(model, tokens, mask, answers, noise=noise, kind=kind, n_samples=n_samples,
                          window=window, seed=seed)
        traces[relation] = tr
        clean[idx], corrupted[idx] = tr.clean.cpu(), tr.corrupted.cpu()
        for p, c in enumerate(_categories(tokens.shape[1], subject)):
            sums[:, c] += tr.scores[:, :, p].sum(0).cpu()
            ie_sums[:, c] += tr.indirect_effect[:, :, p].sum(0).cpu()
            counts[c] += len(idx)
    return FactTrace(scores=sums / counts, indirect_effect=ie_sums / counts, clean=clean, corrupted=corrupted,
                     traces=traces, rows=rows)
