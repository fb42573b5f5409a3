"""Chapter 00 checkers: the reference passes, and wrong answers a learner would plausibly
write are rejected, each with its own hint. The mutants are written here, independently of
the mistakes listed inside the checkers."""

import functools

import einops
import pytest
import torch

from toykit.exercises import CheckFailure, ch00, clear_results, results
from toykit.mlp import TinyMLP


@pytest.fixture(autouse=True)
def fresh():
    clear_results()


def fails_with(check, fn, hint_part):
    with pytest.raises(CheckFailure) as info:
        check(fn)
    err = info.value
    assert isinstance(err, AssertionError)
    assert hint_part in err.hint, err.hint
    assert results()[-1].passed is False
    return err


ALL_CHECKS = [
    (ch00.check_cache_hidden, ch00.cache_hidden, "cache_hidden", 5),
    (ch00.check_zero_ablate_hook, ch00.zero_ablate_hook, "zero_ablate_hook", 6),
    (ch00.check_merge_heads, ch00.merge_heads, "merge_heads", 5),
    (ch00.check_batched_dot, ch00.batched_dot, "batched_dot", 5),
]


@pytest.mark.parametrize("check, reference, name, n_cases", ALL_CHECKS)
def test_reference_passes_and_is_recorded(check, reference, name, n_cases, capsys):
    check(reference)
    assert capsys.readouterr().out == f"✔ {name}: {n_cases} cases passed\n"
    [r] = results()
    assert r.passed and r.exercise == name and r.cases == n_cases


@pytest.mark.parametrize("check, reference, name, n_cases", ALL_CHECKS)
def test_passing_a_result_instead_of_a_function_is_a_type_error(check, reference, name, n_cases):
    with pytest.raises(TypeError, match="expects your function itself"):
        check(torch.zeros(3))


# -- cache_hidden ------------------------------------------------------------------------------


def cache_hidden_with_context_manager(model, x, layer):
    store = []
    with model.hooks(fwd_hooks=[(f"blocks.{layer}.hook_post", lambda a, hook: store.append(a))]):
        model(x)
    return store[0]


def cache_hidden_with_run_with_cache(model, x, layer):
    _, cache = model.run_with_cache(x)
    return cache["post", layer]


@pytest.mark.parametrize("fn", [cache_hidden_with_context_manager,
                                cache_hidden_with_run_with_cache])
def test_cache_hidden_other_correct_answers_pass(fn):
    ch00.check_cache_hidden(fn)


def cache_hidden_pre(model, x, layer):
    store = {}

    def hook(act, hook):
        store["act"] = act

    model.run_with_hooks(x, fwd_hooks=[(f"blocks.{layer}.hook_pre", hook)])
    return store["act"]


def cache_hidden_hardcoded_layer(model, x, layer):
    store = {}
    model.run_with_hooks(x, fwd_hooks=[("blocks.0.hook_post",
                                        lambda act, hook: store.update(act=act))])
    return store["act"]


def cache_hidden_off_by_one(model, x, layer):
    # Thinks of layers as 1..n_layers and reads blocks.{layer + 1}; falls back at the end.
    name = f"blocks.{min(layer + 1, model.n_layers - 1)}.hook_post"
    _, cache = model.run_with_cache(x, names_filter=name)
    return cache[name]


def cache_hidden_returns_output(model, x, layer):
    store = {}
    out = model.run_with_hooks(x, fwd_hooks=[(f"blocks.{layer}.hook_post",
                                              lambda act, hook: store.update(act=act))])
    return out


def cache_hidden_returns_dict(model, x, layer):
    store = {}
    model.run_with_hooks(x, fwd_hooks=[(f"blocks.{layer}.hook_post",
                                        lambda act, hook: store.update(act=act))])
    return store


def cache_hidden_leaves_hook(model, x, layer):
    store = {}
    model.add_hook(f"blocks.{layer}.hook_post", lambda act, hook: store.update(act=act))
    model(x)
    return store["act"]


@pytest.mark.parametrize("mutant, hint", [
    (cache_hidden_pre, "before* the nonlinearity"),
    (cache_hidden_hardcoded_layer, "you always read layer 0"),
    (cache_hidden_off_by_one, "you read the next layer"),
    (cache_hidden_returns_output, "you returned the model's output"),
    (cache_hidden_returns_dict, "not the container"),
    (cache_hidden_leaves_hook, "left hooks attached"),
])
def test_cache_hidden_mutants(mutant, hint):
    fails_with(ch00.check_cache_hidden, mutant, hint)


def test_cache_hidden_leftover_hooks_are_cleaned_up_and_named():
    err = fails_with(ch00.check_cache_hidden, cache_hidden_leaves_hook, "reset_hooks")
    assert "['blocks.0.hook_post']" in str(err)


def test_cache_hidden_reference_leaves_no_hooks():
    model = TinyMLP(3, 4, 2, device="cpu")
    act = ch00.cache_hidden(model, torch.randn(2, 3), 1)
    assert act.shape == (2, 4)
    assert not any(hp.has_hooks for hp in model.hook_points())


def test_cache_hidden_unknown_wrong_answer_gets_the_generic_hint():
    err = fails_with(ch00.check_cache_hidden,
                     lambda model, x, layer: ch00.cache_hidden(model, x, layer) * 2,
                     "after block `layer`'s nonlinearity")
    assert err.case == "2 layers, layer 0"


# -- zero_ablate_hook --------------------------------------------------------------------------


def zero_ablate_with_mask(activation, hook, neurons):
    mask = torch.ones(activation.shape[-1])
    mask[neurons] = 0.0
    return activation * mask


def test_zero_ablate_hook_other_correct_answer_passes():
    ch00.check_zero_ablate_hook(zero_ablate_with_mask)


def zero_ablate_forgot_return(activation, hook, neurons):
    new = activation.clone()
    new[..., neurons] = 0.0


def zero_ablate_in_place_none(activation, hook, neurons):
    activation[..., neurons] = 0.0


def zero_ablate_in_place_returned(activation, hook, neurons):
    activation[..., neurons] = 0.0
    return activation


def zero_ablate_batch_axis(activation, hook, neurons):
    new = activation.clone()
    new[neurons] = 0.0
    return new


def zero_ablate_axis_1(activation, hook, neurons):
    new = activation.clone()
    new[:, neurons] = 0.0
    return new


def zero_ablate_inverted(activation, hook, neurons):
    keep = torch.zeros(activation.shape[-1], dtype=torch.bool)
    keep[neurons] = True
    return torch.where(keep, activation, torch.zeros_like(activation))


def zero_ablate_clone_in_loop(activation, hook, neurons):
    result = activation.clone()
    for n in neurons:
        result = activation.clone()
        result[..., n] = 0
    return result


def zero_ablate_returns_list(activation, hook, neurons):
    return [zero_ablate_with_mask(activation, hook, neurons)]


@pytest.mark.parametrize("mutant, hint", [
    (zero_ablate_forgot_return, "`return` it"),
    (zero_ablate_in_place_none, "in place and returned None"),
    (zero_ablate_in_place_returned, "changed its input in place"),
    (zero_ablate_batch_axis, "rows of the batch axis"),
    (zero_ablate_axis_1, "position axis"),
    (zero_ablate_inverted, "kept only the listed neurons"),
    (zero_ablate_clone_in_loop, "cloning the activation again inside the loop"),
    (zero_ablate_returns_list, "must return None or a tensor"),
])
def test_zero_ablate_hook_mutants(mutant, hint):
    fails_with(ch00.check_zero_ablate_hook, mutant, hint)


def test_zero_ablate_axis_1_mutant_fails_on_the_3d_case():
    err = fails_with(ch00.check_zero_ablate_hook, zero_ablate_axis_1, "activation[..., neurons]")
    assert err.case == "[batch, pos, d_hidden]"


def test_zero_ablate_hook_with_wrong_parameter_names_is_reported():
    # HookPoint calls fn(activation, hook=...), so the parameter must be named `hook`.
    def wrong_names(act, hp, neurons):
        return zero_ablate_with_mask(act, hp, neurons)

    err = fails_with(ch00.check_zero_ablate_hook, wrong_names, "name the parameters exactly")
    assert "unexpected keyword argument 'hook'" in str(err)


def test_zero_ablate_hook_reference_works_inside_a_model():
    model = TinyMLP(4, 6, 3, device="cpu")
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    _, cache = model.run_with_cache(x)
    hook = functools.partial(ch00.zero_ablate_hook, neurons=[1, 3])
    seen = {}
    out = model.run_with_hooks(x, fwd_hooks=[
        ("blocks.0.hook_post", hook),
        ("blocks.1.hook_pre", lambda act, hook: seen.update(pre=act)),
    ])
    assert not torch.allclose(out, model(x))
    post0 = cache["post", 0].clone()
    post0[:, [1, 3]] = 0
    torch.testing.assert_close(seen["pre"], post0 @ model.blocks[1].W_in + model.blocks[1].b_in)
    # The activation the cache holds was not touched by the hook.
    torch.testing.assert_close(cache["post", 0], model.run_with_cache(x)[1]["post", 0])


@pytest.mark.parametrize("neurons, message", [([6], r"neurons must be ints in \[0, 6\)"),
                                              ([1.5], "got \\[1.5\\]")])
def test_zero_ablate_hook_reference_rejects_bad_neurons(neurons, message):
    with pytest.raises(ValueError, match=message):
        ch00.zero_ablate_hook(torch.randn(2, 6), None, neurons=neurons)


# -- merge_heads -------------------------------------------------------------------------------


def merge_heads_reshape(z):
    return z.reshape(z.shape[0], z.shape[1], -1)


def test_merge_heads_reshape_passes():
    ch00.check_merge_heads(merge_heads_reshape)


def merge_heads_d_h(z):
    return einops.rearrange(z, "b p h d -> b p (d h)")


def merge_heads_transpose_then_flatten(z):
    return z.transpose(2, 3).flatten(2)


def merge_heads_flatten_batch(z):
    return einops.rearrange(z, "b p h d -> (b p) (h d)")


def merge_heads_sum(z):
    return z.sum(dim=2)


def merge_heads_pos_heads(z):
    return z.reshape(z.shape[0], -1, z.shape[-1])


@pytest.mark.parametrize("mutant, hint", [
    (merge_heads_d_h, "the head axis must be the outer one"),
    (merge_heads_transpose_then_flatten, "'(d h)' interleaves the heads"),
    (merge_heads_flatten_batch, "you merged batch and pos too"),
    (merge_heads_sum, "you summed over the heads"),
    (merge_heads_pos_heads, "you merged pos with the heads"),
])
def test_merge_heads_mutants(mutant, hint):
    fails_with(ch00.check_merge_heads, mutant, hint)


def test_merge_heads_failure_shows_expected_and_got():
    err = fails_with(ch00.check_merge_heads, merge_heads_d_h, "(h d)")
    assert err.case == "random"
    text = str(err)
    assert text.startswith("✘ merge_heads failed on case 'random'")
    assert "expected tensor shape=[2, 3, 20]" in text and "got tensor shape=[2, 3, 20]" in text


def test_merge_heads_reference_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"z must have shape \[batch, pos, n_heads, d_head\]"):
        ch00.merge_heads(torch.zeros(2, 3, 4))


# -- batched_dot -------------------------------------------------------------------------------


def batched_dot_loop(a, b):
    return torch.stack([a[i] @ b[i] for i in range(a.shape[0])])


def test_batched_dot_loop_passes():
    ch00.check_batched_dot(batched_dot_loop)


def batched_dot_matmul(a, b):
    return a @ b.T


def batched_dot_over_batch(a, b):
    return torch.einsum("bd,bd->d", a, b)


def batched_dot_scalar(a, b):
    return torch.sum(a * b)


def batched_dot_no_sum(a, b):
    return einops.einsum(a, b, "batch d, batch d -> batch d")


def batched_dot_squeeze_all(a, b):
    # Right for every batch but a batch of one, where squeeze() also drops the batch axis.
    return torch.bmm(a[:, None, :], b[:, :, None]).squeeze()


@pytest.mark.parametrize("mutant, hint", [
    (batched_dot_matmul, "every pair of rows"),
    (batched_dot_over_batch, "summed over the batch instead of over d"),
    (batched_dot_scalar, "got one number"),
    (batched_dot_squeeze_all, "squeeze() removed the batch axis too"),
    (batched_dot_no_sum, "did not sum over d"),
])
def test_batched_dot_mutants(mutant, hint):
    fails_with(ch00.check_batched_dot, mutant, hint)


def test_batched_dot_squeeze_is_not_blamed_on_summing_everything():
    err = fails_with(ch00.check_batched_dot, batched_dot_squeeze_all, "squeeze() removed the batch axis")
    assert err.case == "batch of one" and "summed over everything" not in err.hint


def test_batched_dot_reference_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="b must have shape"):
        ch00.batched_dot(torch.zeros(3, 4), torch.zeros(3, 5))
