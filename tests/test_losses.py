"""L2Wrap leaves the loss unchanged and adds 1e-4/n * max logit to the gradient at each row's argmax."""

import torch
import torch.nn.functional as F

from modrwkv.losses import labelled_token_loss


def test_l2wrap_gradient():
    head = torch.nn.Linear(8, 11, bias=False).double()
    hidden = torch.randn(1, 6, 8, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([[3, -100, 5, 1, -100, 7]])
    loss, n = labelled_token_loss(head, hidden, targets, l2wrap=True)
    assert n == 4
    logits = head(hidden[targets != -100])
    plain = F.cross_entropy(logits, targets[targets != -100])
    torch.testing.assert_close(loss, plain)
    g_wrapped = torch.autograd.grad(loss, hidden)[0]
    g_plain = torch.autograd.grad(plain, hidden)[0]
    extra = torch.zeros_like(logits)
    maxx, ids = logits.max(-1, keepdim=True)
    extra.scatter_(-1, ids, maxx * 1e-4 / n)
    expected = g_plain.clone()
    expected[targets != -100] += extra @ head.weight
    torch.testing.assert_close(g_wrapped, expected)


def test_no_labels_gives_zero_loss_with_graph():
    head = torch.nn.Linear(4, 5)
    hidden = torch.randn(1, 3, 4, requires_grad=True)
    loss, n = labelled_token_loss(head, hidden, torch.full((1, 3), -100))
    assert n == 0 and loss.item() == 0.0
    loss.backward()
