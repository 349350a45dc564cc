"""Unit tests for ProximalAdagrad (children/optim.py) against hand-computed TF-style steps.

Per step: accum += g^2; eta = lr / sqrt(accum); v = w - eta * g;
          w = sign(v) * max(|v| - eta * l1, 0) / (1 + eta * l2)
"""

from __future__ import annotations

import math

import pytest
import torch

from transfer_automl.children.optim import ProximalAdagrad

W0 = [1.0, -2.0, 0.05, -0.01]
G = [0.3, -0.4, 0.01, -0.02]
LR = 0.5
ACC0 = 0.1


def _param(values=W0) -> torch.nn.Parameter:
    return torch.nn.Parameter(torch.tensor(values, dtype=torch.float64))


def _step(p: torch.nn.Parameter, opt: torch.optim.Optimizer, grad=G) -> None:
    p.grad = torch.tensor(grad, dtype=torch.float64)
    opt.step()


def _approx(values):
    return pytest.approx(values, rel=1e-12, abs=1e-15)


# accumulators after one step: 0.1 + g^2
ACC1 = [0.1 + 0.09, 0.1 + 0.16, 0.1 + 0.0001, 0.1 + 0.0004]  # [0.19, 0.26, 0.1001, 0.1004]
ETA1 = [LR / math.sqrt(a) for a in ACC1]
# v = w - eta * g
V1 = [
    1.0 - ETA1[0] * 0.3,  # 1 - 1.147079 * 0.3 = 0.655876
    -2.0 - ETA1[1] * -0.4,  # -2 + 0.980581 * 0.4 = -1.607768
    0.05 - ETA1[2] * 0.01,  # 0.05 - 1.580349 * 0.01 = 0.034197
    -0.01 - ETA1[3] * -0.02,  # -0.01 + 1.577986 * 0.02 = 0.021560
]


def test_plain_adagrad_when_l1_and_l2_are_zero():
    p = _param()
    opt = ProximalAdagrad([p], lr=LR)  # initial accumulator defaults to TF's 0.1
    _step(p, opt)
    assert opt.state[p]["accum"].tolist() == _approx(ACC1)
    assert p.detach().tolist() == _approx(V1)
    # sanity against the numbers in the comments
    assert p[0].item() == pytest.approx(1.0 - 0.5 / math.sqrt(0.19) * 0.3)
    assert p[0].item() == pytest.approx(0.655876, abs=1e-6)


def test_plain_adagrad_matches_torch_adagrad_with_same_accumulator():
    # torch's Adagrad adds eps to the denominator; with eps=0 and the same initial accumulator the
    # update is identical to ProximalAdagrad with l1 = l2 = 0
    p = _param()
    q = _param()
    ours = ProximalAdagrad([p], lr=LR, initial_accumulator_value=ACC0)
    ref = torch.optim.Adagrad([q], lr=LR, initial_accumulator_value=ACC0, eps=0.0)
    for grad in (G, [0.1, 0.2, -0.3, 0.4], [-0.5, 0.0, 0.05, 0.2]):
        _step(p, ours, grad)
        _step(q, ref, grad)
    assert p.detach().tolist() == _approx(q.detach().tolist())


def test_l2_shrinks_by_one_plus_eta_l2():
    l2 = 0.1
    p = _param()
    opt = ProximalAdagrad([p], lr=LR, l2=l2, initial_accumulator_value=ACC0)
    _step(p, opt)
    expected = [v / (1.0 + eta * l2) for v, eta in zip(V1, ETA1, strict=True)]
    # element 0: 0.655876 / (1 + 1.147079 * 0.1) = 0.655876 / 1.1147079 = 0.588384
    assert expected[0] == pytest.approx(0.588384, abs=1e-6)
    assert p.detach().tolist() == _approx(expected)
    # every weight moved towards zero relative to plain Adagrad
    assert all(abs(a) < abs(v) for a, v in zip(p.detach().tolist(), V1, strict=True))


def test_l1_soft_threshold_zeroes_small_weights_exactly():
    l1 = 0.1
    p = _param()
    opt = ProximalAdagrad([p], lr=LR, l1=l1, initial_accumulator_value=ACC0)
    _step(p, opt)
    out = p.detach().tolist()
    # thresholds eta * l1: [0.114708, 0.098058, 0.158035, 0.157799]
    # small weights: |v| = 0.0342 < 0.1580 and 0.0216 < 0.1578 -> exactly zero
    assert out[2] == 0.0 and out[3] == 0.0
    # large weights: sign(v) * (|v| - eta * l1)
    assert out[0] == _approx(V1[0] - ETA1[0] * l1)  # 0.655876 - 0.114708 = 0.541169
    assert out[1] == _approx(V1[1] + ETA1[1] * l1)  # -1.607768 + 0.098058 = -1.509710
    assert out[0] == pytest.approx(0.541169, abs=1e-6)
    assert out[1] == pytest.approx(-1.509710, abs=1e-6)


def test_l1_and_l2_together():
    l1, l2 = 0.1, 0.5
    p = _param()
    opt = ProximalAdagrad([p], lr=LR, l1=l1, l2=l2, initial_accumulator_value=ACC0)
    _step(p, opt)
    expected = [
        math.copysign(max(abs(v) - eta * l1, 0.0), v) / (1.0 + eta * l2)
        for v, eta in zip(V1, ETA1, strict=True)
    ]
    assert expected[2] == 0.0 and expected[3] == 0.0
    assert p.detach().tolist() == _approx(expected)


def test_two_steps_accumulator_grows():
    p = _param()
    opt = ProximalAdagrad([p], lr=LR, initial_accumulator_value=ACC0)
    _step(p, opt)
    g2 = [0.2, 0.1, -0.3, 0.0]
    _step(p, opt, g2)
    acc2 = [a + g * g for a, g in zip(ACC1, g2, strict=True)]  # [0.23, 0.27, 0.1901, 0.1004]
    assert opt.state[p]["accum"].tolist() == _approx(acc2)
    eta2 = [LR / math.sqrt(a) for a in acc2]
    expected = [v - e * g for v, e, g in zip(V1, eta2, g2, strict=True)]
    assert p.detach().tolist() == _approx(expected)
    # a zero gradient leaves the weight and its accumulator alone (l1 = l2 = 0)
    assert p[3].item() == V1[3]
    # the second step is smaller than a fresh-accumulator step would have been
    fresh_eta0 = LR / math.sqrt(ACC0 + 0.04)
    assert eta2[0] < fresh_eta0


def test_two_steps_l1_keeps_zeros_with_zero_gradient():
    p = _param()
    opt = ProximalAdagrad([p], lr=LR, l1=0.1, initial_accumulator_value=ACC0)
    _step(p, opt)
    _step(p, opt, [0.0, 0.0, 0.0, 0.0])
    out = p.detach().tolist()
    assert out[2] == 0.0 and out[3] == 0.0
    # second step: accum unchanged (g = 0), so eta = ETA1; w = sign(w)(|w| - eta * l1)
    w1 = [V1[0] - ETA1[0] * 0.1, V1[1] + ETA1[1] * 0.1]
    assert out[0] == _approx(w1[0] - ETA1[0] * 0.1)
    assert out[1] == _approx(w1[1] + ETA1[1] * 0.1)


def test_param_groups_use_their_own_settings():
    a = _param([1.0, 0.01])
    b = _param([1.0, 0.01])
    c = _param([1.0, 0.01])
    opt = ProximalAdagrad(
        [
            {"params": [a]},  # defaults: lr 0.5, no regularization
            {"params": [b], "lr": 0.1, "l2": 1.0},
            {"params": [c], "l1": 0.2, "initial_accumulator_value": 0.15},
        ],
        lr=LR,
    )
    grad = [0.2, 0.0]
    for p in (a, b, c):
        p.grad = torch.tensor(grad, dtype=torch.float64)
    opt.step()
    # a: accum 0.1 + 0.04 = 0.14; eta = 0.5 / sqrt(0.14); w = 1 - eta * 0.2; second: g = 0
    eta_a = 0.5 / math.sqrt(0.14)
    assert a.detach().tolist() == _approx([1.0 - eta_a * 0.2, 0.01])
    # b: eta = 0.1 / sqrt(0.14); (1 - eta*0.2)/(1 + eta); second: eta' = 0.1/sqrt(0.1); 0.01/(1+eta')
    eta_b = 0.1 / math.sqrt(0.14)
    eta_b2 = 0.1 / math.sqrt(0.1)
    assert b.detach().tolist() == _approx([(1.0 - eta_b * 0.2) / (1.0 + eta_b), 0.01 / (1.0 + eta_b2)])
    # c: accum 0.15 + 0.04 = 0.19; eta = 0.5/sqrt(0.19); |v| - 0.2 eta; 0.01 < 0.2*0.5/sqrt(0.15)
    eta_c = 0.5 / math.sqrt(0.19)
    assert c.detach().tolist() == _approx([1.0 - eta_c * 0.2 - eta_c * 0.2, 0.0])
    assert opt.state[c]["accum"].tolist() == _approx([0.19, 0.15])


def test_parameters_without_gradient_are_skipped():
    p = _param()
    q = _param([3.0, 4.0])
    opt = ProximalAdagrad([p, q], lr=LR, l1=1.0, l2=1.0)
    p.grad = torch.tensor(G, dtype=torch.float64)
    opt.step()
    assert q.detach().tolist() == [3.0, 4.0]
    assert "accum" not in opt.state[q]


def test_closure_loss_is_returned():
    w = torch.nn.Parameter(torch.tensor([2.0], dtype=torch.float64))
    opt = ProximalAdagrad([w], lr=LR)

    def closure():
        opt.zero_grad()
        loss = (w ** 2).sum()  # gradient 2w = 4
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == 4.0
    # accum 0.1 + 16; w = 2 - 0.5 / sqrt(16.1) * 4
    assert w.item() == pytest.approx(2.0 - 0.5 / math.sqrt(16.1) * 4.0, rel=1e-12)


def test_float32_parameters_work():
    p = torch.nn.Parameter(torch.tensor(W0, dtype=torch.float32))
    opt = ProximalAdagrad([p], lr=LR, l1=0.1)
    p.grad = torch.tensor(G, dtype=torch.float32)
    opt.step()
    assert p.dtype == torch.float32
    out = p.detach().tolist()
    assert out[2] == 0.0 and out[3] == 0.0
    assert out[0] == pytest.approx(0.541169, abs=1e-6)


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"lr": 0.0}, "lr"),
        ({"lr": -0.1}, "lr"),
        ({"l1": -0.1}, "l1"),
        ({"l2": -1e-9}, "l2"),
        ({"initial_accumulator_value": 0.0}, "initial_accumulator_value"),
        ({"initial_accumulator_value": -0.1}, "initial_accumulator_value"),
    ],
)
def test_invalid_arguments(kwargs, word):
    with pytest.raises(ValueError, match=word):
        ProximalAdagrad([_param()], **kwargs)


def test_sparse_rows_update_only_touched_rows_and_equal_the_dense_update():
    """Without L1/L2 a row with a zero gradient keeps its weight and accumulator, so the
    row-sparse path (the wide tower's) must end bit for bit where the dense one does."""
    torch.manual_seed(0)
    dense = torch.randn(50, 4)
    sparse = dense.clone().requires_grad_(True)
    dense.requires_grad_(True)
    opt_dense = ProximalAdagrad([{"params": [dense], "lr": 0.7}])
    opt_sparse = ProximalAdagrad([{"params": [sparse], "lr": 0.7, "sparse_rows": True}])
    for step in range(5):
        grad = torch.zeros(50, 4)
        grad[torch.randperm(50)[:7]] = torch.randn(7, 4)
        dense.grad, sparse.grad = grad.clone(), grad.clone()
        opt_dense.step()
        opt_sparse.step()
        assert torch.equal(dense, sparse), step
        assert torch.equal(opt_dense.state[dense]["accum"], opt_sparse.state[sparse]["accum"])


def test_sparse_rows_regularize_lazily_like_tensorflows_sparse_update():
    """With L1 and L2 the row-sparse path shrinks only the rows with a gradient (TensorFlow's
    SparseApplyProximalAdagrad): those rows get exactly the dense update, the others stay put,
    where the dense update would have shrunk them too."""
    torch.manual_seed(0)
    start = torch.randn(50, 4)
    for step in range(5):
        grad = torch.zeros(50, 4)
        touched = torch.randperm(50)[:7]
        grad[touched] = torch.randn(7, 4)
        dense, sparse = start.clone().requires_grad_(True), start.clone().requires_grad_(True)
        opt_dense = ProximalAdagrad([{"params": [dense], "lr": 0.7, "l1": 0.5, "l2": 0.1}])
        opt_sparse = ProximalAdagrad([{"params": [sparse], "lr": 0.7, "l1": 0.5, "l2": 0.1, "sparse_rows": True}])
        dense.grad, sparse.grad = grad.clone(), grad.clone()
        opt_dense.step()
        opt_sparse.step()
        others = torch.ones(50, dtype=torch.bool)
        others[touched] = False
        assert torch.equal(sparse.detach()[touched], dense.detach()[touched]), step
        assert torch.equal(sparse.detach()[others], start[others]), step
        assert not torch.equal(dense.detach()[others], start[others]), step
        start = sparse.detach().clone()
