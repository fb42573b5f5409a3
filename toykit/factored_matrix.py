"""FactoredMatrix: a low-rank matrix M = A @ B kept as its two factors.

Attention heads are full of such products: a head's QK circuit is ``W_Q @ W_K.T``
([d_model, d_head] @ [d_head, d_model]) and its OV circuit is ``W_V @ W_O``. Both are
d_model x d_model but have rank at most d_head. Keeping the factors makes products, norms,
singular values and eigenvalues cheap (everything goes through the small middle dimension),
and it is how TransformerLens exposes ``model.QK`` and ``model.OV``.

Shapes: A [..., ldim, mdim], B [..., mdim, rdim], M = A @ B [..., ldim, rdim]. Leading
("batch") dims broadcast, so ``model.OV`` is one FactoredMatrix of shape
[n_layers, n_heads, d_model, d_model] and ``model.OV[1, 3]`` is one head's circuit.
"""

from __future__ import annotations

import warnings

import torch


class FactoredMatrix:
    """M = A @ B, stored as A [..., ldim, mdim] and B [..., mdim, rdim].

    ``@`` works with tensors and other FactoredMatrix objects on either side and returns a
    FactoredMatrix whenever the result is a matrix (a tensor when it is a vector).
    """

    def __init__(self, A: torch.Tensor, B: torch.Tensor) -> None:
        for name, x in (("A", A), ("B", B)):
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"FactoredMatrix: {name} must be a torch.Tensor, got {type(x).__name__}")
            if x.ndim < 2:
                raise ValueError(f"FactoredMatrix: {name} must have at least 2 dims, got shape {list(x.shape)}")
        if A.shape[-1] != B.shape[-2]:
            raise ValueError(
                f"FactoredMatrix: A [..., ldim, mdim] and B [..., mdim, rdim] must share mdim, "
                f"got A {list(A.shape)} and B {list(B.shape)}"
            )
        try:
            lead = torch.broadcast_shapes(A.shape[:-2], B.shape[:-2])
        except RuntimeError as e:
            raise ValueError(
                f"FactoredMatrix: the leading dims of A {list(A.shape)} and B {list(B.shape)} do not broadcast"
            ) from e
        # Broadcast up front so that indexing and .T treat A and B identically (views, no copy).
        self.A = A.broadcast_to(*lead, *A.shape[-2:])
        self.B = B.broadcast_to(*lead, *B.shape[-2:])

    # -- shape -------------------------------------------------------------------------------

    @property
    def ldim(self) -> int:
        return self.A.shape[-2]

    @property
    def mdim(self) -> int:
        return self.A.shape[-1]

    @property
    def rdim(self) -> int:
        return self.B.shape[-1]

    @property
    def shape(self) -> torch.Size:
        """The shape of the full matrix: [..., ldim, rdim]."""
        return torch.Size((*self.A.shape[:-2], self.ldim, self.rdim))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return f"FactoredMatrix(shape={list(self.shape)}, mdim={self.mdim})"

    # -- dense forms -------------------------------------------------------------------------

    @property
    def AB(self) -> torch.Tensor:
        """The full matrix A @ B: [..., ldim, rdim]."""
        return self.A @ self.B

    @property
    def BA(self) -> torch.Tensor:
        """B @ A: [..., mdim, mdim]; needs ldim == rdim. Shares AB's nonzero eigenvalues."""
        if self.ldim != self.rdim:
            raise ValueError(f"FactoredMatrix.BA needs a square matrix (ldim == rdim), got shape {list(self.shape)}")
        return self.B @ self.A

    @property
    def T(self) -> FactoredMatrix:
        """The transpose, (A B)^T = B^T A^T, still factored."""
        return FactoredMatrix(self.B.mT, self.A.mT)

    def get_corner(self, k: int = 3) -> torch.Tensor:
        """The top-left k x k block of AB, without forming AB: [..., k, k]."""
        return self.A[..., :k, :] @ self.B[..., :, :k]

    # -- products ----------------------------------------------------------------------------

    def __matmul__(self, other: torch.Tensor | FactoredMatrix) -> torch.Tensor | FactoredMatrix:
        """self @ other. other: a vector [rdim], a matrix [..., rdim, k] or a FactoredMatrix."""
        if isinstance(other, FactoredMatrix):
            # (A B)(C D): fold B C into whichever side keeps the middle dim small.
            return (self @ other.A) @ other.B
        if not isinstance(other, torch.Tensor):
            return NotImplemented
        if other.ndim == 0 or other.shape[-2 if other.ndim >= 2 else 0] != self.rdim:
            raise ValueError(
                f"FactoredMatrix @ tensor: shapes {list(self.shape)} and {list(other.shape)} do not "
                f"match (the tensor's first matrix dim must be rdim={self.rdim})"
            )
        if other.ndim == 1:
            return (self.A @ (self.B @ other[:, None]))[..., 0]  # [..., ldim]
        if self.rdim > self.mdim:
            return FactoredMatrix(self.A, self.B @ other)
        return FactoredMatrix(self.AB, other)

    def __rmatmul__(self, other: torch.Tensor) -> torch.Tensor | FactoredMatrix:
        """other @ self. other: a vector [ldim] or a matrix [..., k, ldim]."""
        if not isinstance(other, torch.Tensor):
            return NotImplemented
        if other.ndim == 0 or other.shape[-1] != self.ldim:
            raise ValueError(
                f"tensor @ FactoredMatrix: shapes {list(other.shape)} and {list(self.shape)} do not "
                f"match (the tensor's last dim must be ldim={self.ldim})"
            )
        if other.ndim == 1:
            return ((other[None, :] @ self.A) @ self.B)[..., 0, :]  # [..., rdim]
        if self.ldim > self.mdim:
            return FactoredMatrix(other @ self.A, self.B)
        return FactoredMatrix(other, self.AB)

    def __mul__(self, scalar: float | int | torch.Tensor) -> FactoredMatrix:
        """Multiply by a scalar (a Python number or a 0-dim tensor)."""
        if isinstance(scalar, torch.Tensor) and scalar.ndim != 0:
            raise ValueError(f"FactoredMatrix * x: x must be a scalar, got a tensor of shape {list(scalar.shape)}")
        if not isinstance(scalar, (int, float, torch.Tensor)):
            return NotImplemented
        return FactoredMatrix(self.A * scalar, self.B)

    __rmul__ = __mul__

    # -- spectra -----------------------------------------------------------------------------

    def svd(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reduced SVD of AB from the factors, never forming AB.

        Returns U [..., ldim, k], S [..., k], V [..., rdim, k] with k = min(ldim, mdim, rdim),
        such that ``U @ torch.diag_embed(S) @ V.mT == AB``, S descending. As in TransformerLens,
        the third entry is V, not ``torch.linalg.svd``'s Vh = V.mT.
        """
        # A = Ua Sa Vha and B = Ub Sb Vhb, so AB = Ua (Sa Vha Ub Sb) Vhb: only the small middle
        # matrix (at most mdim x mdim) needs one more SVD.
        Ua, Sa, Vha = torch.linalg.svd(self.A, full_matrices=False)
        Ub, Sb, Vhb = torch.linalg.svd(self.B, full_matrices=False)
        middle = (Sa[..., :, None] * Vha) @ (Ub * Sb[..., None, :])
        Um, S, Vhm = torch.linalg.svd(middle, full_matrices=False)
        return Ua @ Um, S, (Vhm @ Vhb).mT

    @property
    def U(self) -> torch.Tensor:
        """Left singular vectors of AB: [..., ldim, k]."""
        return self.svd()[0]

    @property
    def S(self) -> torch.Tensor:
        """Singular values of AB: [..., min(ldim, mdim, rdim)], descending."""
        return self.svd()[1]

    @property
    def V(self) -> torch.Tensor:
        """Right singular vectors of AB: [..., rdim, k], so AB = U diag(S) V^T."""
        return self.svd()[2]

    @property
    def Vh(self) -> torch.Tensor:
        """TransformerLens's deprecated alias, which returns V [..., rdim, k] (not V^T); use .V."""
        warnings.warn("FactoredMatrix.Vh returns V, as in TransformerLens, where the name is deprecated; "
                      "use .V (and .V.mT for the transpose)", DeprecationWarning, stacklevel=2)
        return self.V

    def collapse_l(self) -> torch.Tensor:
        """diag(S) V^T [..., k, rdim]: AB with its orthonormal left factor U dropped."""
        U, S, V = self.svd()
        return S[..., :, None] * V.mT

    def collapse_r(self) -> torch.Tensor:
        """U diag(S) [..., ldim, k]: AB with its orthonormal right factor V^T dropped."""
        U, S, V = self.svd()
        return U * S[..., None, :]

    def make_even(self) -> FactoredMatrix:
        """The same matrix refactored as (U sqrt(S)) (sqrt(S) V^T): both factors share the
        singular values evenly."""
        U, S, V = self.svd()
        root = S.sqrt()
        return FactoredMatrix(U * root[..., None, :], root[..., :, None] * V.mT)

    @property
    def pair(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The factors (A, B)."""
        return self.A, self.B

    def unsqueeze(self, k: int) -> FactoredMatrix:
        """Insert a leading dim of size 1 at position k (of the full shape; k <= ndim - 2)."""
        n = self.ndim
        pos = k + n + 1 if k < 0 else k
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= pos <= n - 2:
            raise ValueError(f"FactoredMatrix.unsqueeze: k must place the new dim among the leading dims of "
                             f"shape {list(self.shape)} (0 <= k <= {n - 2}), got {k!r}")
        return FactoredMatrix(self.A.unsqueeze(pos), self.B.unsqueeze(pos))

    def norm(self) -> torch.Tensor:
        """Frobenius norm of AB, from its singular values: [...]."""
        return self.S.pow(2).sum(-1).sqrt()

    @property
    def eigenvalues(self) -> torch.Tensor:
        """Eigenvalues of BA ([..., mdim], complex). AB (ldim x ldim) has the same nonzero
        eigenvalues; the rest of its eigenvalues are zero."""
        return torch.linalg.eigvals(self.BA)

    # -- indexing ----------------------------------------------------------------------------

    def __getitem__(self, idx: object) -> FactoredMatrix:
        """Index the leading dims, e.g. ``model.OV[layer, head]`` or ``OV[:, None]``; as in
        TransformerLens, one more index selects rows of the matrix and two more select rows
        and columns, always keeping the matrix 2-D (an int i acts as the slice i:i+1)."""
        parts = idx if isinstance(idx, tuple) else (idx,)
        if any(p is Ellipsis for p in parts):
            raise IndexError("FactoredMatrix indexing does not support '...'; index the leading dims explicitly")
        n_lead = self.ndim - 2
        n_idx = sum(p is not None for p in parts)
        if n_idx <= n_lead:
            return FactoredMatrix(self.A[parts], self.B[parts])
        if n_idx > n_lead + 2:
            raise IndexError(
                f"FactoredMatrix of shape {list(self.shape)} has {n_lead} leading dim(s), then rows and "
                f"columns: at most {n_lead + 2} indices, got {idx!r}"
            )
        if n_idx == n_lead + 1:  # rows: only A changes
            return FactoredMatrix(self.A[(*parts[:-1], _keep_dim(parts[-1]))], self.B[parts[:-1]])
        lead, rows, cols = parts[:-2], _keep_dim(parts[-2]), _keep_dim(parts[-1])
        return FactoredMatrix(self.A[(*lead, rows)], self.B[(*lead, slice(None), cols)])

    def __len__(self) -> int:
        if self.ndim == 2:
            raise TypeError("len() of a FactoredMatrix with no leading dims")
        return self.shape[0]

    def to(self, *args, **kwargs) -> FactoredMatrix:
        return FactoredMatrix(self.A.to(*args, **kwargs), self.B.to(*args, **kwargs))


def _keep_dim(p: object) -> object:
    """An int index i as the slice i:i+1, so that the matrix keeps its row or column dim."""
    if isinstance(p, int) and not isinstance(p, bool):
        return slice(p, None if p == -1 else p + 1)
    return p
