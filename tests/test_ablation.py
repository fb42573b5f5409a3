"""Head ablation hooks: what they replace, what they leave alone, and agreement with circuits."""

from functools import partial

import pytest
import torch

from toykit.ablation import head_ablation_hook, mean_activation
from toykit.circuits import ablated_loss_by_position
from toykit.tasks.repeated_tokens import generate_repeated_tokens
from toykit.transformer import HookedTransformer, TransformerConfig


def test_zero_and_mean_replace_only_the_chosen_heads():
    z = torch.randn(3, 5, 4, 2, generator=torch.Generator().manual_seed(0))
    before = z.clone()
    zero = head_ablation_hook(z, None, 1)
    assert (zero[:, :, 1] == 0).all() and torch.equal(zero[:, :, [0, 2, 3]], z[:, :, [0, 2, 3]])
    mean = head_ablation_hook(z, None, [0, 3], method="mean")
    for h in (0, 3):
        assert torch.allclose(mean[:, :, h], z[:, :, h].mean(dim=(0, 1)).expand(3, 5, 2))
    assert torch.equal(mean[:, :, 1:3], z[:, :, 1:3])
    per_pos = head_ablation_hook(z, None, 2, method="mean", mean_over="batch")
    assert torch.allclose(per_pos[:, :, 2], z[:, :, 2].mean(dim=0).expand(3, 5, 2))
    assert torch.equal(z, before)  # the input is not edited


def test_mean_activation_is_the_one_mean():
    act = torch.randn(4, 6, 3, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(mean_activation(act, mean_over="batch"), act.mean(0, keepdim=True))
    torch.testing.assert_close(mean_activation(act, mean_over="batch_and_pos"), act.mean((0, 1), keepdim=True))
    with pytest.raises(ValueError, match="mean_over must be one of"):
        mean_activation(act, mean_over="pos")
    with pytest.raises(TypeError):
        mean_activation(act, "batch")  # keyword-only
    with pytest.raises(ValueError, match="at least 2 dims"):
        mean_activation(torch.randn(3), mean_over="batch")


def test_bad_arguments_are_clear_errors():
    z = torch.randn(2, 3, 4, 5)
    with pytest.raises(ValueError, match="method must be 'zero' or 'mean'"):
        head_ablation_hook(z, None, 0, method="resample")
    with pytest.raises(ValueError, match=r"head_index must be an int .* in \[0, n_heads=4\)"):
        head_ablation_hook(z, None, 4)
    with pytest.raises(ValueError, match=r"z must have shape \[batch, pos, n_heads, d_head\]"):
        head_ablation_hook(torch.randn(3, 4, 5), None, 0)


def test_hook_agrees_with_ablated_loss_by_position():
    cfg = TransformerConfig(n_layers=2, d_model=16, n_heads=2, d_vocab=20, n_ctx=17, attn_only=True, device="cpu")
    model = HookedTransformer(cfg)
    tokens = generate_repeated_tokens(4, 8, 20, seed=0)
    for method in ("zero", "mean"):
        hooks = [("blocks.1.attn.hook_z", partial(head_ablation_hook, head_index=[0, 1], method=method))]
        loss = model.run_with_hooks(tokens, fwd_hooks=hooks, return_type="loss", loss_per_token=True).mean(0)
        expected = ablated_loss_by_position(model, tokens, [(1, 0), (1, 1)], method)
        assert torch.allclose(loss.detach(), expected, atol=1e-6)
    assert not any(hp.has_hooks for hp in model.hook_dict.values())
