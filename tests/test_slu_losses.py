"""COCONUT losses against values computed by hand (explicit formulas on 2-3 samples)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from speechunits.slu.losses import ProjectionHead, combine_losses, multimodal_loss, nspt_loss, seq_kd_targets


def unit(v: list[float]) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    return a / np.linalg.norm(a)


def t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


STUDENT = [[1.0, 0.0], [0.6, 0.8], [0.0, 2.0]]
TEACHER = [[2.0, 1.0], [0.0, 1.0]]
TAU = 0.5


def test_nspt_one_positive_each() -> None:
    # samples 0, 1 are rehearsal (classes 0, 1), sample 2 is new (class 2)
    s = [unit(v) for v in STUDENT]
    te = [unit(v) for v in TEACHER]
    # anchor 0: positive t0 (class 0); denominator over student samples 1 and 2
    l0 = -(s[0] @ te[0] / TAU - math.log(math.exp(s[0] @ s[1] / TAU) + math.exp(s[0] @ s[2] / TAU)))
    # anchor 1: positive t1 (class 1); denominator over student samples 0 and 2
    l1 = -(s[1] @ te[1] / TAU - math.log(math.exp(s[1] @ s[0] / TAU) + math.exp(s[1] @ s[2] / TAU)))
    expected = (l0 + l1) / 2
    got = nspt_loss(
        t(STUDENT), torch.tensor([0, 1, 2]), torch.tensor([True, True, False]), t(TEACHER), torch.tensor([0, 1]), TAU
    )
    assert got.item() == pytest.approx(expected, rel=1e-9)


def test_nspt_two_positives_from_teacher() -> None:
    # both rehearsal samples share class 0 -> each anchor has the two teacher embeddings as positives
    s = [unit(v) for v in STUDENT]
    te = [unit(v) for v in TEACHER]
    losses = []
    for i, others in ((0, (1, 2)), (1, (0, 2))):
        log_den = math.log(sum(math.exp(s[i] @ s[a] / TAU) for a in others))
        losses.append(-sum(s[i] @ te[p] / TAU - log_den for p in (0, 1)) / 2)
    got = nspt_loss(
        t(STUDENT), torch.tensor([0, 0, 1]), torch.tensor([True, True, False]), t(TEACHER), torch.tensor([0, 0]), TAU
    )
    assert got.item() == pytest.approx(sum(losses) / 2, rel=1e-9)


def test_nspt_gradient_flows_to_student_only_and_empty_cases() -> None:
    student = t(STUDENT).requires_grad_(True)
    teacher = t(TEACHER)
    loss = nspt_loss(student, torch.tensor([0, 1, 2]), torch.tensor([True, True, False]), teacher, torch.tensor([0, 1]))
    loss.backward()
    assert student.grad is not None and torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0
    no_anchor = nspt_loss(student, torch.tensor([0, 1, 2]), torch.zeros(3, dtype=torch.bool), teacher, torch.tensor([0, 1]))
    assert no_anchor.item() == 0.0 and no_anchor.requires_grad
    no_pos = nspt_loss(student, torch.tensor([5, 6, 2]), torch.tensor([True, True, False]), teacher, torch.tensor([0, 1]))
    assert no_pos.item() == 0.0


AUDIO = [[1.0, 0.0], [1.0, 1.0], [0.0, 3.0]]
TEXT = [[2.0, 0.5], [0.5, 1.0], [-1.0, 1.0]]
LABELS = [0, 0, 1]


def _mm_by_hand(anchor: list[np.ndarray], other: list[np.ndarray]) -> float:
    total = 0.0
    for i in range(3):
        den = sum(math.exp(anchor[i] @ other[j] / TAU) for j in range(3))
        pos = [p for p in range(3) if LABELS[p] == LABELS[i]]
        total += -sum(math.log(math.exp(anchor[i] @ other[p] / TAU) / den) for p in pos) / len(pos)
    return total / 3


def test_multimodal_loss_by_hand() -> None:
    a = [unit(v) for v in AUDIO]
    x = [unit(v) for v in TEXT]
    a2t = _mm_by_hand(a, x)
    t2a = _mm_by_hand(x, a)
    labels = torch.tensor(LABELS)
    assert multimodal_loss(t(AUDIO), t(TEXT), labels, TAU, symmetric=False).item() == pytest.approx(a2t, rel=1e-9)
    assert multimodal_loss(t(AUDIO), t(TEXT), labels, TAU).item() == pytest.approx((a2t + t2a) / 2, rel=1e-9)


def test_multimodal_loss_mask() -> None:
    # keeping samples 0 and 2 only: one positive each (themselves), denominators over 2 texts
    a = [unit(AUDIO[i]) for i in (0, 2)]
    x = [unit(TEXT[i]) for i in (0, 2)]
    by_hand = 0.0
    for i in range(2):
        by_hand += -math.log(math.exp(a[i] @ x[i] / TAU) / sum(math.exp(a[i] @ x[j] / TAU) for j in range(2)))
    got = multimodal_loss(t(AUDIO), t(TEXT), torch.tensor(LABELS), TAU, mask=torch.tensor([True, False, True]), symmetric=False)
    assert got.item() == pytest.approx(by_hand / 2, rel=1e-9)
    audio, text = t(AUDIO).requires_grad_(), t(TEXT).requires_grad_()
    empty = multimodal_loss(audio, text, torch.tensor(LABELS), TAU, mask=torch.zeros(3, dtype=torch.bool))
    assert empty.item() == 0.0
    # an empty selection still reaches both inputs (under DDP every rank must give the text head a gradient)
    empty.backward()
    assert audio.grad is not None and text.grad is not None and not text.grad.any()


def test_aligned_pairs_have_lower_mm_loss() -> None:
    labels = torch.tensor([0, 1, 2])
    a = torch.eye(3)
    assert multimodal_loss(a, a.clone(), labels).item() < multimodal_loss(a, a[[1, 2, 0]], labels).item()


def test_projection_head_and_helpers() -> None:
    head = ProjectionHead(16, hidden_dim=8, out_dim=4)
    assert head(torch.randn(5, 16)).shape == (5, 4)
    tin, tout = seq_kd_targets([[5, 6], [7]])
    assert tin.tolist() == [[2, 5, 6], [2, 7, 0]]
    assert tout.tolist() == [[5, 6, 3], [7, 3, 0]]
    total = combine_losses({"ce": torch.tensor(1.0), "nspt": torch.tensor(2.0), "mm": torch.tensor(4.0)}, {"nspt": 0.1, "mm": 0.5})
    assert total.item() == pytest.approx(1.0 + 0.2 + 2.0)
