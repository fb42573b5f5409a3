"""toykit.interop without the optional libraries (the main venv has none of them): a bridge
raises an ImportError that names the package to install. The bridges themselves are tested
against the real libraries in tests/interop/, in the .venv-lens venv (make interop)."""

import importlib.util
import sys

import pytest

from toykit.interop import from_hf_gpt2, from_saelens, from_transformer_lens, to_saelens, to_transformer_lens
from toykit.sae import make_sae
from toykit.transformer import HookedTransformer, TransformerConfig


@pytest.fixture
def without_optional_libraries(monkeypatch):
    for module in ("transformer_lens", "sae_lens", "transformers"):
        if importlib.util.find_spec(module) is not None:
            monkeypatch.setitem(sys.modules, module, None)  # what a missing package looks like


@pytest.mark.usefixtures("without_optional_libraries")
def test_bridges_name_the_package_to_install():
    model = HookedTransformer(TransformerConfig(n_layers=1, d_model=8, n_heads=2, n_ctx=4, d_vocab=5, device="cpu"))
    sae = make_sae(d_in=8, d_sae=16, device="cpu")
    for call, package in [(lambda: to_transformer_lens(model), "transformer-lens"),
                          (lambda: from_transformer_lens(object()), "transformer-lens"),
                          (lambda: to_saelens(sae), "sae-lens"), (lambda: from_saelens(object()), "sae-lens"),
                          (lambda: from_hf_gpt2(object()), "transformers")]:
        with pytest.raises(ImportError, match=f"pip install {package}"):
            call()


def test_bad_arguments_are_named_before_any_import():
    with pytest.raises(TypeError, match="HookedTransformer"):
        to_transformer_lens("gpt2")
    with pytest.raises(TypeError, match="toykit SAE"):
        to_saelens(object())
