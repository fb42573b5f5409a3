"""Chapter 03 checks: toykit's own modules and independent correct versions pass, and wrong
answers a learner would plausibly write are rejected with the hint for that mistake.

The learner-style classes and mutants below are written out here, independently of the
Mistake functions inside the checks, so that each check is tested on real code.
"""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from checker_helpers import rejects

from toykit import transformer as tt
from toykit.exercises import CheckFailure, ch03, results
from toykit.exercises.checking import NOT_IMPLEMENTED_HINT
from toykit.sampling import sample_next_token

torch.set_num_threads(1)


class NotDoneModule(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        # YOUR CODE HERE
        raise NotImplementedError()


ALL_CHECKS = [
    ch03.check_layer_norm, ch03.check_embed, ch03.check_pos_embed, ch03.check_attention, ch03.check_mlp,
    ch03.check_transformer_block, ch03.check_unembed, ch03.check_transformer, ch03.check_lm_cross_entropy_loss,
    ch03.check_sample_next_token,
]
CLASS_CHECKS = ALL_CHECKS[:8]


@pytest.mark.parametrize("check", CLASS_CHECKS, ids=lambda c: c.__name__)
def test_a_class_whose_init_is_not_done_gets_the_not_done_hint(check):
    rejects(check, NotDoneModule, NOT_IMPLEMENTED_HINT)


@pytest.mark.parametrize("check", CLASS_CHECKS, ids=lambda c: c.__name__)
def test_passing_an_instance_instead_of_the_class_is_a_type_error(check):
    with pytest.raises(TypeError, match="expects your class itself"):
        check(nn.Linear(2, 2))


@pytest.mark.parametrize("check", [ch03.check_lm_cross_entropy_loss, ch03.check_sample_next_token],
                         ids=lambda c: c.__name__)
def test_passing_a_module_or_a_value_instead_of_the_function_is_a_type_error(check):
    # A module is callable, but these checks want the learner's function.
    for wrong in (nn.Linear(2, 2), 3.0):
        with pytest.raises(TypeError, match="expects your function itself"):
            check(wrong)


# -- independent, learner-style correct versions ------------------------------------------------


class LayerNorm(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.w = nn.Parameter(torch.ones(cfg.d_model))
        self.b = nn.Parameter(torch.zeros(cfg.d_model))

    def forward(self, x):
        centred = x - x.mean(dim=-1, keepdim=True)
        scale = (centred.pow(2).mean(dim=-1, keepdim=True) + self.cfg.eps).sqrt()
        return centred / scale * self.w + self.b


class Embed(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.W_E = nn.Parameter(torch.empty(cfg.d_vocab, cfg.d_model))

    def forward(self, tokens):
        return self.W_E[tokens]


class PosEmbed(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.W_pos = nn.Parameter(torch.empty(cfg.n_ctx, cfg.d_model))

    def forward(self, tokens):
        batch, pos = tokens.shape
        return self.W_pos[:pos].unsqueeze(0).expand(batch, pos, -1)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        h, d, e = cfg.n_heads, cfg.d_model, cfg.d_head
        self.W_Q, self.W_K, self.W_V = (nn.Parameter(torch.empty(h, d, e)) for _ in range(3))
        self.W_O = nn.Parameter(torch.empty(h, e, d))
        self.b_Q, self.b_K, self.b_V = (nn.Parameter(torch.zeros(h, e)) for _ in range(3))
        self.b_O = nn.Parameter(torch.zeros(d))
        self.register_buffer("IGNORE", torch.tensor(-1e5), persistent=False)

    def scores(self, x):
        q = torch.einsum("bpd,hde->bhpe", x, self.W_Q) + self.b_Q[:, None]
        k = torch.einsum("bpd,hde->bhpe", x, self.W_K) + self.b_K[:, None]
        return q @ k.transpose(-1, -2) / math.sqrt(self.cfg.d_head)  # [b, h, q, k]

    def mask(self, n):
        return torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)

    def pattern(self, scores):
        n = scores.shape[-1]
        return scores.masked_fill(self.mask(n), self.IGNORE).softmax(-1)

    def combine(self, x, pattern):
        v = torch.einsum("bpd,hde->bhpe", x, self.W_V) + self.b_V[:, None]
        z = pattern @ v  # [b, h, q, e]
        return torch.einsum("bhqe,hed->bqd", z, self.W_O) + self.b_O

    def forward(self, x):
        return self.combine(x, self.pattern(self.scores(x)))


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.W_in = nn.Parameter(torch.empty(cfg.d_model, cfg.d_mlp))
        self.b_in = nn.Parameter(torch.zeros(cfg.d_mlp))
        self.W_out = nn.Parameter(torch.empty(cfg.d_mlp, cfg.d_model))
        self.b_out = nn.Parameter(torch.zeros(cfg.d_model))

    def act(self, x):
        return F.gelu(x) if self.cfg.act_fn == "gelu" else F.relu(x)

    def forward(self, x):
        return self.act(x @ self.W_in + self.b_in) @ self.W_out + self.b_out


def norm(cfg):
    return LayerNorm(cfg) if cfg.normalization_type == "LN" else nn.Identity()


class TransformerBlock(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.ln1, self.attn, self.ln2, self.mlp = norm(cfg), Attention(cfg), norm(cfg), MLP(cfg)

    def forward(self, resid_pre):
        resid_mid = resid_pre + self.attn(self.ln1(resid_pre))
        return resid_mid + self.mlp(self.ln2(resid_mid))


class Unembed(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.W_U = nn.Parameter(torch.empty(cfg.d_model, cfg.d_vocab))
        self.b_U = nn.Parameter(torch.zeros(cfg.d_vocab))

    def forward(self, x):
        return x @ self.W_U + self.b_U


class Transformer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed, self.pos_embed = Embed(cfg), PosEmbed(cfg)
        self.blocks = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.n_layers))
        self.ln_final, self.unembed = norm(cfg), Unembed(cfg)

    def forward(self, tokens):
        resid = self.embed(tokens) + self.pos_embed(tokens)
        for block in self.blocks:
            resid = block(resid)
        return self.unembed(self.ln_final(resid))


def loss_good(logits, tokens):
    log_probs = logits.log_softmax(dim=-1)[:, :-1]
    return -log_probs.gather(-1, tokens[:, 1:].unsqueeze(-1)).mean()


def sample_good(logits, temperature=1.0, top_k=None, generator=None):
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k is not None:
        values, _ = logits.topk(top_k, dim=-1)
        logits = torch.where(logits < values[:, -1:], float("-inf"), logits)
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)


def sample_gumbel(logits, temperature=1.0, top_k=None, generator=None):
    # A different, equally right sampler: the Gumbel-max trick, with the generator's uniforms.
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k is not None:
        kth = logits.sort(dim=-1, descending=True).values[:, top_k - 1: top_k]
        logits = logits.masked_fill(logits < kth, -1e9)
    u = torch.rand(logits.shape, generator=generator).clamp(1e-12, 1 - 1e-7)
    return (logits - (-u.log()).log()).argmax(-1)


@pytest.mark.parametrize("check, toykits, ours, n_cases", [
    (ch03.check_layer_norm, tt.LayerNorm, LayerNorm, 5),
    (ch03.check_embed, tt.Embed, Embed, 4),
    (ch03.check_pos_embed, tt.PosEmbed, PosEmbed, 4),
    (ch03.check_attention, tt.Attention, Attention, 6),
    (ch03.check_mlp, tt.MLP, MLP, 4),
    (ch03.check_transformer_block, tt.TransformerBlock, TransformerBlock, 4),
    (ch03.check_unembed, tt.Unembed, Unembed, 3),
    (ch03.check_transformer, tt.HookedTransformer, Transformer, 5),
    (ch03.check_lm_cross_entropy_loss, tt.lm_cross_entropy_loss, loss_good, 3),
    (ch03.check_sample_next_token, sample_next_token, sample_good, 8),
], ids=lambda x: getattr(x, "__name__", None))
def test_toykits_version_and_an_independent_one_pass(check, toykits, ours, n_cases, capsys):
    check(toykits)
    check(ours)
    name = check.__name__.removeprefix("check_")
    assert capsys.readouterr().out == f"✔ {name}: {n_cases} cases passed\n" * 2
    assert [r.passed for r in results()] == [True, True] and results()[0].exercise == name


def test_the_gumbel_max_sampler_passes_too():
    ch03.check_sample_next_token(sample_gumbel)


# -- LayerNorm -----------------------------------------------------------------------------------


class LNUnbiased(LayerNorm):
    def forward(self, x):
        return (x - x.mean(-1, keepdim=True)) / (x.var(-1, keepdim=True) + self.cfg.eps).sqrt() * self.w + self.b


class LNEpsOutside(LayerNorm):
    def forward(self, x):
        std = x.std(-1, keepdim=True, unbiased=False)
        return (x - x.mean(-1, keepdim=True)) / (std + self.cfg.eps) * self.w + self.b


class LNNoCentring(LayerNorm):
    def forward(self, x):
        return x / (x.pow(2).mean(-1, keepdim=True) + self.cfg.eps).sqrt() * self.w + self.b


class LNNoAffine(LayerNorm):
    def forward(self, x):
        return F.layer_norm(x, x.shape[-1:], eps=self.cfg.eps)


class LNHardCodedEps(LayerNorm):
    def forward(self, x):
        return F.layer_norm(x, x.shape[-1:], self.w, self.b, eps=1e-5)


class LNTorchNames(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.ln = nn.LayerNorm(cfg.d_model, eps=cfg.eps)

    def forward(self, x):
        return self.ln(x)


class LNNoSuperInit(nn.Module):
    def __init__(self, cfg):
        self.w = nn.Parameter(torch.ones(cfg.d_model))


@pytest.mark.parametrize("cls, hint", [
    (LNUnbiased, "variance must be the biased one"),
    (LNEpsOutside, "eps goes inside the square root"),
    (LNNoCentring, "subtract the mean"),
    (LNNoAffine, "scale by w and shift by b"),
    (LNHardCodedEps, "use cfg.eps"),
    (LNTorchNames, "no parameter w of shape [d_model] = [8]"),
    (LNNoSuperInit, "call super().__init__()"),
])
def test_layer_norm_mutants(cls, hint):
    rejects(ch03.check_layer_norm, cls, hint)


class LNInPlace(LayerNorm):
    def forward(self, x):
        x -= x.mean(dim=-1, keepdim=True)  # rewrites the residual stream it was given
        return x / (x.pow(2).mean(dim=-1, keepdim=True) + self.cfg.eps).sqrt() * self.w + self.b


def test_layer_norm_that_edits_its_input_is_rejected():
    rejects(ch03.check_layer_norm, LNInPlace, "modified one of its inputs in place")


# -- Embed and PosEmbed --------------------------------------------------------------------------


class EmbedScaled(Embed):
    def forward(self, tokens):
        return self.W_E[tokens] * self.W_E.shape[1] ** 0.5


class EmbedTorch(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embedding = nn.Embedding(cfg.d_vocab, cfg.d_model)

    def forward(self, tokens):
        return self.embedding(tokens)


class EmbedTransposed(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.W_E = nn.Parameter(torch.empty(cfg.d_model, cfg.d_vocab))

    def forward(self, tokens):
        return self.W_E.T[tokens]


@pytest.mark.parametrize("cls, hint", [
    (EmbedScaled, "does not multiply it by sqrt(d_model)"),
    (EmbedTorch, "no parameter W_E of shape [d_vocab, d_model]"),
    (EmbedTransposed, "W_E must have shape [d_vocab, d_model] = [20, 16]"),
])
def test_embed_mutants(cls, hint):
    rejects(ch03.check_embed, cls, hint)


class PosNotSliced(PosEmbed):
    def forward(self, tokens):
        return self.W_pos.repeat(tokens.shape[0], 1, 1)


class PosByTokenId(PosEmbed):
    def forward(self, tokens):
        return self.W_pos[tokens]


class PosNoBatch(PosEmbed):
    def forward(self, tokens):
        return self.W_pos[: tokens.shape[-1]]


@pytest.mark.parametrize("cls, hint", [
    (PosNotSliced, "must be sliced to the sequence length"),
    (PosByTokenId, "not with the token ids"),
    (PosNoBatch, "one copy per sequence"),
])
def test_pos_embed_mutants(cls, hint):
    rejects(ch03.check_pos_embed, cls, hint)


# -- Attention -----------------------------------------------------------------------------------


class AttnNoMask(Attention):
    def pattern(self, scores):
        return scores.softmax(-1)


class AttnMaskAfterSoftmax(Attention):
    def pattern(self, scores):
        return scores.softmax(-1).masked_fill(self.mask(scores.shape[-1]), 0.0)


class AttnMaskWithZero(Attention):
    def pattern(self, scores):
        return scores.masked_fill(self.mask(scores.shape[-1]), 0.0).softmax(-1)


class AttnScaleByDHead(Attention):
    def scores(self, x):
        return super().scores(x) * math.sqrt(self.cfg.d_head) / self.cfg.d_head


class AttnUnscaled(Attention):
    def scores(self, x):
        return super().scores(x) * math.sqrt(self.cfg.d_head)


class AttnMasksItself(Attention):
    def mask(self, n):
        return torch.triu(torch.ones(n, n, dtype=torch.bool))


class AttnSoftmaxOverQueries(Attention):
    def pattern(self, scores):
        return scores.masked_fill(self.mask(scores.shape[-1]), -1e5).softmax(-2)


class AttnNoBiases(Attention):
    def scores(self, x):
        q = torch.einsum("bpd,hde->bhpe", x, self.W_Q)
        k = torch.einsum("bpd,hde->bhpe", x, self.W_K)
        return q @ k.transpose(-1, -2) / math.sqrt(self.cfg.d_head)

    def combine(self, x, pattern):
        z = pattern @ torch.einsum("bpd,hde->bhpe", x, self.W_V)
        return torch.einsum("bhqe,hed->bqd", z, self.W_O) + self.b_O


class AttnBiasPerHead(Attention):
    def combine(self, x, pattern):
        v = torch.einsum("bpd,hde->bhpe", x, self.W_V) + self.b_V[:, None]
        per_head = torch.einsum("bhqe,hed->bqhd", pattern @ v, self.W_O) + self.b_O
        return per_head.sum(2)


class AttnPersistentMask(Attention):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.register_buffer("causal", torch.triu(torch.ones(cfg.n_ctx, cfg.n_ctx, dtype=torch.bool), 1))


class AttnFlatWeights(nn.Module):
    # Written with nn.Linear layers, as in many tutorials: the names do not match toykit's.
    def __init__(self, cfg):
        super().__init__()
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x):
        return self.out(x)


class AttnScaleByDModel(Attention):
    def scores(self, x):
        return super().scores(x) * math.sqrt(self.cfg.d_head) / math.sqrt(self.cfg.d_model)


class AttnMaskFor10(Attention):
    # A mask built once for 10 positions, as in a tutorial with n_ctx = 10: right for short inputs.
    def __init__(self, cfg):
        super().__init__(cfg)
        self.register_buffer("causal", torch.triu(torch.ones(10, 10, dtype=torch.bool), 1), persistent=False)

    def mask(self, n):
        return self.causal[:n, :n]


class AttnFloat64(Attention):
    # Passes float64 parameters to the block; its output would turn the residual stream into float64.
    def __init__(self, cfg):
        super().__init__(cfg)
        for name, p in list(self.named_parameters()):
            setattr(self, name, nn.Parameter(p.detach().double()))

    def forward(self, x):
        return super().forward(x.double())


class AttnCastsBack(Attention):
    # Computes in float64 but returns the residual stream's dtype: fine.
    def forward(self, x):
        W = {name: p.double() for name, p in self.named_parameters()}
        q = torch.einsum("bpd,hde->bhpe", x.double(), W["W_Q"]) + W["b_Q"][:, None]
        k = torch.einsum("bpd,hde->bhpe", x.double(), W["W_K"]) + W["b_K"][:, None]
        v = torch.einsum("bpd,hde->bhpe", x.double(), W["W_V"]) + W["b_V"][:, None]
        pattern = self.pattern(q @ k.transpose(-1, -2) / math.sqrt(self.cfg.d_head))
        return (torch.einsum("bhqe,hed->bqd", pattern @ v, W["W_O"]) + W["b_O"]).float()


def test_attention_computed_in_float64_passes(capsys):
    ch03.check_attention(AttnCastsBack)
    assert "✔ attention" in capsys.readouterr().out


def test_a_float64_submodule_is_named_in_the_block_check():
    class Float64Block(TransformerBlock):
        def __init__(self, cfg):
            super().__init__(cfg)
            self.attn = AttnFloat64(cfg)

    err = rejects(ch03.check_transformer_block, Float64Block, "cfg.dtype")
    assert "shape" not in err.hint


@pytest.mark.parametrize("cls, hint", [
    (AttnScaleByDModel, "You divided by sqrt(d_model)"),
    (AttnMaskFor10, "not a fixed size"),
    (AttnFloat64, "create every parameter with the config's dtype"),
    (AttnNoMask, "no causal mask"),
    (AttnMaskAfterSoftmax, "is the mask applied before the softmax?"),
    (AttnMaskWithZero, "not 0: exp(0) = 1"),
    (AttnScaleByDHead, "is the scale 1/sqrt(d_head)? You divided the scores by d_head"),
    (AttnUnscaled, "is the scale 1/sqrt(d_head)? You did not scale"),
    (AttnMasksItself, "may attend to its own position"),
    (AttnSoftmaxOverQueries, "softmax goes over the key axis"),
    (AttnNoBiases, "add the biases b_Q, b_K and b_V"),
    (AttnBiasPerHead, "not once per head"),
    (AttnPersistentMask, "persistent=False"),
    (AttnFlatWeights, "no parameter W_Q of shape [n_heads, d_model, d_head] = [4, 36, 9]"),
])
def test_attention_mutants(cls, hint):
    rejects(ch03.check_attention, cls, hint)


# -- MLP -----------------------------------------------------------------------------------------


class MLPAlwaysReLU(MLP):
    def act(self, x):
        return F.relu(x)


class MLPTanhGELU(MLP):
    def act(self, x):
        return F.gelu(x, approximate="tanh") if self.cfg.act_fn == "gelu" else F.relu(x)


class MLPAlwaysGELU(MLP):
    def act(self, x):
        return F.gelu(x)


class MLPNoBiases(MLP):
    def forward(self, x):
        return self.act(x @ self.W_in) @ self.W_out


class MLPActTwice(MLP):
    def forward(self, x):
        return self.act(super().forward(x))


@pytest.mark.parametrize("cls, hint", [
    (MLPAlwaysReLU, "the MLP uses GELU here"),
    (MLPTanhGELU, "not the tanh approximation"),
    (MLPAlwaysGELU, "this case has act_fn='relu'"),
    (MLPNoBiases, "add the biases"),
    (MLPActTwice, "not after W_out as well"),
])
def test_mlp_mutants(cls, hint):
    rejects(ch03.check_mlp, cls, hint)


# -- TransformerBlock ----------------------------------------------------------------------------


class BlockNoResidual(TransformerBlock):
    def forward(self, resid_pre):
        return self.mlp(self.ln2(self.attn(self.ln1(resid_pre))))


class BlockPostNorm(TransformerBlock):
    def forward(self, resid_pre):
        resid_mid = self.ln1(resid_pre + self.attn(resid_pre))
        return self.ln2(resid_mid + self.mlp(resid_mid))


class BlockParallel(TransformerBlock):
    def forward(self, resid_pre):
        return resid_pre + self.attn(self.ln1(resid_pre)) + self.mlp(self.ln2(resid_pre))


class BlockAlwaysLayerNorm(TransformerBlock):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.ln1, self.ln2 = LayerNorm(cfg), LayerNorm(cfg)


class BlockSharedNorm(TransformerBlock):
    def forward(self, resid_pre):
        resid_mid = resid_pre + self.attn(self.ln1(resid_pre))
        return resid_mid + self.mlp(self.ln1(resid_mid))


@pytest.mark.parametrize("cls, hint", [
    (BlockNoResidual, "residual connections"),
    (BlockPostNorm, "pre-norm"),
    (BlockParallel, "the MLP reads resid_mid"),
    (BlockAlwaysLayerNorm, "normalization_type=None the model has no LayerNorm"),
    (BlockSharedNorm, "goes through ln2"),
])
def test_transformer_block_mutants(cls, hint):
    rejects(ch03.check_transformer_block, cls, hint)


def test_a_wrong_component_fails_the_block_check():
    class BrokenAttention(AttnNoMask):
        pass

    class Block(TransformerBlock):
        def __init__(self, cfg):
            super().__init__(cfg)
            self.attn = BrokenAttention(cfg)

    err = rejects(ch03.check_transformer_block, Block, "check LayerNorm, Attention and MLP first")
    assert err.case == "LayerNorm, GELU"


# -- Unembed -------------------------------------------------------------------------------------


class UnembedNoBias(Unembed):
    def forward(self, x):
        return x @ self.W_U


class UnembedSoftmax(Unembed):
    def forward(self, x):
        return F.softmax(super().forward(x), dim=-1)


@pytest.mark.parametrize("cls, hint", [(UnembedNoBias, "add the bias"), (UnembedSoftmax, "not probabilities")])
def test_unembed_mutants(cls, hint):
    rejects(ch03.check_unembed, cls, hint)


# -- the whole model -----------------------------------------------------------------------------


class ModelNoFinalLN(Transformer):
    def forward(self, tokens):
        resid = self.embed(tokens) + self.pos_embed(tokens)
        for block in self.blocks:
            resid = block(resid)
        return self.unembed(resid)


class ModelNoPositions(Transformer):
    def forward(self, tokens):
        resid = self.embed(tokens)
        for block in self.blocks:
            resid = block(resid)
        return self.unembed(self.ln_final(resid))


class ModelLastPosition(Transformer):
    def forward(self, tokens):
        return super().forward(tokens)[:, -1, :]


class ModelOtherNames(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed, self.pos_embed = Embed(cfg), PosEmbed(cfg)
        self.layers = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.n_layers))
        self.ln_final, self.unembed = norm(cfg), Unembed(cfg)


@pytest.mark.parametrize("cls, hint", [
    (ModelNoFinalLN, "apply the final LayerNorm"),
    (ModelNoPositions, "add the positional embedding"),
    (ModelLastPosition, "at every position"),
    (ModelOtherNames, "name the submodules as toykit does"),
])
def test_transformer_mutants(cls, hint):
    rejects(ch03.check_transformer, cls, hint)


# -- the loss ------------------------------------------------------------------------------------


def loss_no_shift(logits, tokens):
    return F.cross_entropy(logits.flatten(0, 1), tokens.flatten())


def loss_shift_backwards(logits, tokens):
    return F.cross_entropy(logits[:, 1:].flatten(0, 1), tokens[:, :-1].flatten())


def loss_sum(logits, tokens):
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten(), reduction="sum")


def loss_no_minus(logits, tokens):
    return logits.log_softmax(-1)[:, :-1].gather(-1, tokens[:, 1:, None]).mean()


def loss_per_token(logits, tokens):
    return -logits.log_softmax(-1)[:, :-1].gather(-1, tokens[:, 1:, None]).squeeze(-1)


def loss_item(logits, tokens):
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten()).item()


def loss_numpy(logits, tokens):
    return float(F.cross_entropy(logits[:, :-1].flatten(0, 1).detach(), tokens[:, 1:].flatten()))


@pytest.mark.parametrize("fn, hint", [
    (loss_item, "carries gradients"),
    (loss_numpy, "carries gradients"),
    (loss_no_shift, "predicts the *next* token"),
    (loss_shift_backwards, "the shift goes the other way"),
    (loss_sum, "not sum"),
    (loss_no_minus, "*negative* log-probability"),
    (loss_per_token, "a single number"),
])
def test_loss_mutants(fn, hint):
    rejects(ch03.check_lm_cross_entropy_loss, fn, hint)


# -- sampling ------------------------------------------------------------------------------------


def sample_times_temperature(logits, temperature=1.0, top_k=None, generator=None):
    return sample_good(logits * temperature**2, temperature, top_k, generator)  # = logits * T after / T


def sample_probs_over_temperature(logits, temperature=1.0, top_k=None, generator=None):
    if temperature == 0:
        return logits.argmax(-1)
    probs = logits.softmax(-1) / temperature  # multinomial renormalises: temperature has no effect
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def sample_bottom_k(logits, temperature=1.0, top_k=None, generator=None):
    if top_k is None or temperature == 0:
        return sample_good(logits, temperature, None, generator)
    idx = (-logits).topk(top_k, dim=-1).indices
    kept = torch.full_like(logits, float("-inf")).scatter(-1, idx, logits.gather(-1, idx))
    return sample_good(kept, temperature, None, generator)


def sample_top_k_strict(logits, temperature=1.0, top_k=None, generator=None):
    if top_k is None or temperature == 0:
        return sample_good(logits, temperature, None, generator)
    logits = logits / temperature
    kth = logits.topk(top_k, dim=-1).values[:, -1:]
    logits = logits.masked_fill(logits <= kth, -1e9)
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]


def sample_top_k_zero_fill(logits, temperature=1.0, top_k=None, generator=None):
    if top_k is None or temperature == 0:
        return sample_good(logits, temperature, None, generator)
    logits = logits / temperature
    kth = logits.topk(top_k, dim=-1).values[:, -1:]
    return torch.multinomial(torch.where(logits >= kth, logits, 0.0).softmax(-1), 1, generator=generator)[:, 0]


def sample_no_greedy_case(logits, temperature=1.0, top_k=None, generator=None):
    logits = logits / temperature  # inf and nan when temperature is 0
    if top_k is not None:
        logits = logits.masked_fill(logits < logits.topk(top_k, dim=-1).values[:, -1:], float("-inf"))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]


def sample_global_rng(logits, temperature=1.0, top_k=None, generator=None):
    if temperature == 0:
        return logits.argmax(-1)
    return torch.distributions.Categorical(logits=logits / temperature).sample()


def sample_keepdim(logits, temperature=1.0, top_k=None, generator=None):
    return torch.multinomial((logits / temperature).softmax(-1), 1, generator=generator)


def sample_int32(logits, temperature=1.0, top_k=None, generator=None):
    return sample_good(logits, temperature, top_k, generator).int()


def sample_renamed(logits, temp=1.0, top_k=None, generator=None):
    return sample_good(logits, temp, top_k, generator)


def sample_in_place(logits, temperature=1.0, top_k=None, generator=None):
    if temperature == 0:
        return logits.argmax(-1)
    logits /= temperature  # edits the caller's logits
    return sample_good(logits, 1.0, top_k, generator)


@pytest.mark.parametrize("fn, hint", [
    (sample_int32, "return int64 token ids"),
    (sample_renamed, "keep the parameter names"),
    (sample_in_place, "modified one of its inputs in place"),
    (sample_times_temperature, "temperature divides the logits: softmax(logits / temperature); you multiplied"),
    (sample_probs_over_temperature, "dividing probabilities by it changes nothing"),
    (sample_bottom_k, "you kept the k smallest"),
    (sample_top_k_strict, "with <= you keep only k - 1"),
    (sample_top_k_zero_fill, "not to 0"),
    (sample_no_greedy_case, "temperature 0 means greedy"),
    (sample_global_rng, "draw with the generator"),
    (sample_keepdim, "one token id per row, shape [batch]"),
])
def test_sample_next_token_mutants(fn, hint):
    rejects(ch03.check_sample_next_token, fn, hint)


def test_the_grader_canary_is_rejected():
    """`toykit grade` checks that a check rejects the reference's output plus one."""
    with pytest.raises(CheckFailure):
        ch03.check_sample_next_token(lambda *a, **k: sample_next_token(*a, **k) + 1)
    with pytest.raises(CheckFailure):
        ch03.check_lm_cross_entropy_loss(lambda *a, **k: tt.lm_cross_entropy_loss(*a, **k) + 1)


# -- the reference sampler and generate ----------------------------------------------------------


def test_sample_next_token_validates_its_arguments():
    logits = torch.randn(2, 5)
    with pytest.raises(ValueError, match=r"logits must have shape \[batch, d_vocab\]"):
        sample_next_token(torch.randn(5))
    with pytest.raises(TypeError, match="logits must be a floating-point tensor"):
        sample_next_token(torch.ones(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="temperature must be a number >= 0"):
        sample_next_token(logits, temperature=-0.5)
    with pytest.raises(ValueError, match=r"top_k must be None or an int in \[1, d_vocab=5\]"):
        sample_next_token(logits, top_k=6)
    with pytest.raises(TypeError, match="generator must be None or a torch.Generator"):
        sample_next_token(logits, generator=0)


def test_sample_next_token_greedy_top_k_and_repeatable():
    logits = torch.randn(6, 30, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sample_next_token(logits, temperature=0), logits.argmax(-1))
    assert torch.equal(sample_next_token(logits, top_k=1, generator=torch.Generator().manual_seed(1)),
                       logits.argmax(-1))
    draws = sample_next_token(logits.repeat(200, 1), top_k=3, generator=torch.Generator().manual_seed(2))
    allowed = logits.topk(3).indices.repeat(200, 1)
    assert (allowed == draws[:, None]).any(-1).all()
    a = sample_next_token(logits, 2.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, sample_next_token(logits, 2.0, generator=torch.Generator().manual_seed(3)))
    assert a.dtype == torch.long and a.shape == (6,)


def test_generate_uses_sample_next_token():
    cfg = tt.TransformerConfig(n_layers=1, d_model=16, n_heads=2, d_vocab=11, n_ctx=8, device="cpu")
    model = tt.HookedTransformer(cfg)
    prompt = torch.tensor([[1, 2, 3]])
    out = model.generate(prompt, 1, temperature=1.5, top_k=4, seed=7)
    logits = model(prompt)[:, -1]
    expected = sample_next_token(logits, 1.5, 4, generator=torch.Generator().manual_seed(7))
    assert torch.equal(out[:, -1], expected)
