"""The progress bar every training loop uses: ``tqdm.auto``, without its Jupyter warning.

In Jupyter without ipywidgets, ``tqdm.auto`` warns (naming the venv's path) and falls back
to a text bar, which is fine; the warning would only clutter notebook outputs.
"""

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from tqdm.auto import tqdm

__all__ = ["tqdm"]
