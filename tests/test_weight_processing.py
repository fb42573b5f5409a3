import pytest
import torch

from toykit.transformer import HookedTransformer, TransformerConfig
from toykit.weight_processing import (
    center_unembed,
    center_writing_weights,
    fold_layer_norm,
    fold_value_biases,
    process_weights,
    process_weights_,
)


def random_model(**kw):
    """A model whose every parameter (LayerNorm w and b, all biases) is far from its init,
    so that folding and centring have something to do."""
    base = dict(n_layers=2, d_model=16, n_heads=4, d_mlp=20, d_vocab=11, n_ctx=9, device="cpu",
                dtype=torch.float64, act_fn="gelu")
    base.update(kw)
    model = HookedTransformer(TransformerConfig(**base))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def tokens():
    return torch.randint(0, 11, (4, 9), generator=torch.Generator().manual_seed(1))


def assert_same_predictions(a, b, t):
    la, lb = a(t), b(t)
    torch.testing.assert_close(la.log_softmax(-1), lb.log_softmax(-1), atol=1e-10, rtol=0)
    # logits differ by at most a constant per position
    diff = la - lb
    torch.testing.assert_close(diff, diff.mean(-1, keepdim=True).expand_as(diff), atol=1e-10, rtol=0)


CONFIGS = [dict(), dict(attn_only=True), dict(normalization_type="LNPre"), dict(normalization_type=None),
           dict(act_fn="relu", use_attn_result=True)]


@pytest.mark.parametrize("kw", CONFIGS)
def test_processing_leaves_the_predictions_unchanged(kw):
    model = random_model(**kw)
    t = tokens()
    before = model(t)
    processed = process_weights(model)
    assert_same_predictions(model, processed, t)
    torch.testing.assert_close(model(t), before, atol=0, rtol=0)  # the original is untouched
    assert model.cfg is not processed.cfg
    expected_norm = None if kw.get("normalization_type", "LN") is None else "LNPre"
    assert processed.cfg.normalization_type == expected_norm


@pytest.mark.parametrize("kw", CONFIGS)
def test_each_step_alone_is_invariant(kw):
    t = tokens()
    steps = [fold_layer_norm, center_unembed, fold_value_biases]
    if kw.get("normalization_type", "LN") is not None:
        steps.append(center_writing_weights)
    for step in steps:
        model = random_model(**kw)
        reference = random_model(**kw)
        assert step(model) is model
        assert_same_predictions(reference, model, t)


def test_processed_weights_have_the_promised_form():
    model = process_weights(random_model())
    names = dict(model.named_parameters())
    assert not any(".ln" in n for n in names), "LayerNorm weights must be folded away"
    zero = torch.zeros((), dtype=torch.float64)
    for W in [model.W_E, model.W_pos, model.W_O, model.b_O, model.W_out, model.b_out]:
        torch.testing.assert_close(W.mean(-1), zero.expand(W.shape[:-1]))
    for W, axis in [(model.W_Q, 2), (model.W_K, 2), (model.W_V, 2), (model.W_in, 1), (model.W_U, 0)]:
        torch.testing.assert_close(W.mean(axis), zero.expand(W.mean(axis).shape))  # reading weights centred
    torch.testing.assert_close(model.W_U.mean(-1), zero.expand(16))
    torch.testing.assert_close(model.b_U.mean(), zero)
    assert (model.b_V == 0).all()


def test_in_place_processing_and_hooks_after_folding():
    model = random_model()
    t = tokens()
    reference = random_model()
    model.add_hook("blocks.0.hook_resid_pre", lambda a, hook: None)
    assert process_weights_(model) is model
    assert_same_predictions(reference, model, t)
    assert model.cfg.normalization_type == "LNPre"
    assert model.hook_dict["blocks.0.hook_resid_pre"].has_hooks  # hooks elsewhere survive
    _, cache = model.run_with_cache(t)
    assert cache["scale", 0, "ln2"].shape == (4, 9, 1)
    assert cache["ln_final.hook_normalized"].shape == (4, 9, 16)


def test_options_can_switch_steps_off():
    model = random_model()
    out = process_weights(model, fold_ln=False, center_writing_weights=False, center_unembed=False,
                          fold_value_biases=False)
    for (name, a), b in zip(model.named_parameters(), out.parameters()):
        assert torch.equal(a, b), name


def test_center_writing_weights_needs_a_layernorm():
    with pytest.raises(ValueError, match="normalization_type"):
        center_writing_weights(random_model(normalization_type=None))
    with pytest.raises(TypeError, match="HookedTransformer"):
        process_weights(torch.nn.Linear(2, 2))
