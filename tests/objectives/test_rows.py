"""`rows`: x[keep] without the copy when every row is kept, same values and gradients."""

import torch
from ftbench.objectives.base import rows


def test_rows_equals_boolean_indexing_in_value_and_gradient():
    for keep in (torch.tensor([True, True, True, True]), torch.tensor([True, False, True, False])):
        x = torch.randn(4, 3, requires_grad=True)
        w = torch.randn(int(keep.sum()), 3)
        (rows(x, keep) * w).sum().backward()
        ours = x.grad.clone()
        x.grad = None
        (x[keep] * w).sum().backward()
        assert torch.equal(rows(x, keep), x[keep])
        assert torch.equal(ours, x.grad)
    x = torch.randn(4, 3)
    assert rows(x, torch.ones(4, dtype=torch.bool)) is x
