import pytest
import torch

from toykit.factored_matrix import FactoredMatrix


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.fixture
def fm():
    # Leading dims [2, 3]; a 6 x 5 matrix of rank <= 4.
    return FactoredMatrix(rand(2, 3, 6, 4, seed=1), rand(2, 3, 4, 5, seed=2))


def close(a, b):
    torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9)


def test_shapes_and_dense_forms(fm):
    assert fm.shape == (2, 3, 6, 5) and fm.ndim == 4
    assert (fm.ldim, fm.mdim, fm.rdim) == (6, 4, 5)
    close(fm.AB, fm.A @ fm.B)
    close(fm.T.AB, fm.AB.mT)
    assert fm.T.shape == (2, 3, 5, 6)
    close(fm.get_corner(2), fm.AB[..., :2, :2])
    assert "FactoredMatrix" in repr(fm) and "[2, 3, 6, 5]" in repr(fm)
    assert len(fm) == 2


def test_leading_dims_broadcast():
    fm = FactoredMatrix(rand(3, 6, 4), rand(4, 5))
    assert fm.shape == (3, 6, 5)
    close(fm.AB, rand(3, 6, 4) @ rand(4, 5))


def test_matmul_with_tensors_on_both_sides(fm):
    right, left = rand(5, 7, seed=3), rand(8, 6, seed=4)
    for out in (fm @ right, left @ fm):
        assert isinstance(out, FactoredMatrix)
    close((fm @ right).AB, fm.AB @ right)
    close((left @ fm).AB, left @ fm.AB)
    v_r, v_l = rand(5, seed=5), rand(6, seed=6)
    close(fm @ v_r, fm.AB @ v_r)
    close(v_l @ fm, v_l @ fm.AB)
    # a small right factor keeps the product factored through the small middle dim
    wide = FactoredMatrix(rand(6, 2), rand(2, 9))
    assert (wide @ rand(9, 3)).mdim == 2
    assert (rand(3, 6) @ wide).mdim == 2


def test_matmul_between_factored_matrices(fm):
    other = FactoredMatrix(rand(5, 3, seed=7), rand(3, 6, seed=8))
    out = fm @ other
    assert isinstance(out, FactoredMatrix) and out.shape == (2, 3, 6, 6)
    close(out.AB, fm.AB @ other.AB)
    close((other @ fm[0, 0]).AB, other.AB @ fm.AB[0, 0])


def test_matmul_shape_errors_name_the_shapes(fm):
    with pytest.raises(ValueError, match=r"\[2, 3, 6, 5\] and \[4, 7\]"):
        fm @ rand(4, 7)
    with pytest.raises(ValueError, match="ldim=6"):
        rand(3, 5) @ fm
    with pytest.raises(ValueError, match="must share mdim"):
        FactoredMatrix(rand(6, 4), rand(3, 5))
    with pytest.raises(ValueError, match="do not broadcast"):
        FactoredMatrix(rand(2, 6, 4), rand(3, 4, 5))
    with pytest.raises(ValueError, match="at least 2 dims"):
        FactoredMatrix(rand(6), rand(6, 5))


def test_svd_returns_V_like_transformerlens(fm):
    """svd() returns (U, S, V) with AB = U diag(S) V^T: V, not torch.linalg.svd's Vh, third."""
    U, S, V = fm.svd()
    assert U.shape == (2, 3, 6, 4) and S.shape == (2, 3, 4) and V.shape == (2, 3, 5, 4)
    close(S, torch.linalg.svdvals(fm.AB)[..., :4])
    close(U @ torch.diag_embed(S) @ V.mT, fm.AB)
    close(U.mT @ U, torch.eye(4, dtype=torch.float64).expand(2, 3, 4, 4))
    close(V.mT @ V, torch.eye(4, dtype=torch.float64).expand(2, 3, 4, 4))
    close(fm.S, S)
    close(fm.U, U)
    close(fm.V, V)
    with pytest.warns(DeprecationWarning, match="use .V"):
        close(fm.Vh, V)  # TransformerLens's deprecated alias returns V too


def test_svd_when_the_middle_dim_is_largest():
    fm = FactoredMatrix(rand(3, 8), rand(8, 4))  # rank <= 3
    U, S, V = fm.svd()
    assert S.shape == (3,) and V.shape == (4, 3)
    close(U @ torch.diag(S) @ V.mT, fm.AB)


def test_collapse_make_even_pair_and_unsqueeze(fm):
    U, S, V = fm.svd()
    close(U @ fm.collapse_l(), fm.AB)  # collapse_l = diag(S) V^T [..., k, rdim]
    assert fm.collapse_l().shape == (2, 3, 4, 5)
    close(fm.collapse_r() @ V.mT, fm.AB)  # collapse_r = U diag(S) [..., ldim, k]
    assert fm.collapse_r().shape == (2, 3, 6, 4)
    even = fm.make_even()
    close(even.AB, fm.AB)
    close(even.A.norm(dim=-2), even.B.norm(dim=-1))  # each factor holds sqrt(S)
    A, B = fm.pair
    assert A is fm.A and B is fm.B
    assert fm.unsqueeze(0).shape == (1, 2, 3, 6, 5)
    assert fm.unsqueeze(2).shape == (2, 3, 1, 6, 5)
    assert fm.unsqueeze(-3).shape == (2, 3, 1, 6, 5)
    close(fm.unsqueeze(1).AB, fm.AB.unsqueeze(1))
    with pytest.raises(ValueError, match="leading dims"):
        fm.unsqueeze(-1)


def test_norm_is_frobenius(fm):
    close(fm.norm(), fm.AB.norm(dim=(-2, -1)))
    assert fm.norm().shape == (2, 3)


def test_eigenvalues_are_the_nonzero_eigenvalues_of_AB():
    fm = FactoredMatrix(rand(6, 3, seed=9), rand(3, 6, seed=10))
    eig = fm.eigenvalues
    assert eig.shape == (3,) and eig.is_complex()
    dense = torch.linalg.eigvals(fm.AB)
    big = dense[dense.abs() > 1e-8]
    key = lambda z: (round(z.real.item(), 6), round(z.imag.item(), 6))  # noqa: E731
    assert sorted(map(key, big)) == sorted(map(key, eig))
    close(fm.BA, fm.B @ fm.A)
    with pytest.raises(ValueError, match="square"):
        _ = FactoredMatrix(rand(6, 3), rand(3, 5)).BA


def test_indexing_leading_dims(fm):
    close(fm[1].AB, fm.AB[1])
    close(fm[1, 2].AB, fm.AB[1, 2])
    close(fm[:, 1:].AB, fm.AB[:, 1:])
    assert fm[:, None].shape == (2, 1, 3, 6, 5)
    assert fm[0][2].shape == (6, 5)
    with pytest.raises(IndexError, match="leading dim"):
        fm[0, 0, 0, 0, 0]
    with pytest.raises(IndexError, match=r"\.\.\."):
        fm[..., 0]


def test_scalar_multiplication(fm):
    close((2 * fm).AB, 2 * fm.AB)
    close((fm * torch.tensor(3.0, dtype=torch.float64)).AB, 3 * fm.AB)
    with pytest.raises(ValueError, match="scalar"):
        fm * torch.ones(2)


def test_composition_score_from_factored_circuits():
    """The guide's K-composition score, computed from factors, equals the dense formula."""
    W_QK = FactoredMatrix(rand(8, 2, seed=11), rand(2, 8, seed=12))
    W_OV = FactoredMatrix(rand(8, 2, seed=13), rand(2, 8, seed=14))
    score = (W_QK.T @ W_OV).norm() / (W_QK.norm() * W_OV.norm())
    dense = (W_QK.AB.T @ W_OV.AB).norm() / (W_QK.AB.norm() * W_OV.AB.norm())
    close(score, dense)


def test_indexing_rows_and_columns_keeps_a_matrix():
    """As in TransformerLens: past the leading dims, an index selects rows (then columns) and the
    result stays 2-D, an int i acting as i:i+1."""
    fm = FactoredMatrix(rand(6, 4, seed=3), rand(4, 5, seed=4))
    assert fm[2].shape == (1, 5)
    close(fm[2].AB, fm.AB[2:3])
    close(fm[-1].AB, fm.AB[-1:])
    close(fm[1:4].AB, fm.AB[1:4])
    close(fm[2, 3].AB, fm.AB[2:3, 3:4])
    close(fm[:, -1].AB, fm.AB[:, -1:])
    close(fm[1:3, 0:2].AB, fm.AB[1:3, 0:2])
    assert fm[2].mdim == 4  # still factored
    batched = FactoredMatrix(rand(2, 6, 4, seed=5), rand(2, 4, 5, seed=6))
    close(batched[1, 2].AB, batched.AB[1, 2:3])
    close(batched[0, :, 4].AB, batched.AB[0, :, 4:5])
    with pytest.raises(IndexError, match="at most 2"):
        fm[0, 0, 0]
