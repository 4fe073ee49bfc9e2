from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cdarts.search.losses import alpha_l1_penalty, distillation_loss, regularizer_coefficient


def _pair() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(12, 5, generator=generator), torch.randn(12, 5, generator=generator)


def test_kl_is_teacher_to_student_averaged_over_elements_times_t_squared() -> None:
    student, teacher = _pair()
    t = 2.0
    p = torch.softmax(teacher / t, 1)
    expected_elementwise = (p * (p.log() - torch.log_softmax(student / t, 1))).mean() * t * t
    got = distillation_loss(student, teacher, "kl", t, "elementwise_mean")
    assert torch.allclose(got, expected_elementwise, atol=1e-6)
    per_sample = distillation_loss(student, teacher, "kl", t, "batchmean")
    assert torch.allclose(per_sample, got * student.shape[1], atol=1e-5)  # K x the element mean


@pytest.mark.parametrize(
    ("kind", "plain"),
    [
        ("smooth_l1", lambda s, t: F.smooth_l1_loss(s, t)),
        ("mse", lambda s, t: F.mse_loss(s, t)),
        ("cosine", lambda s, t: -F.cosine_similarity(s, t, dim=1).mean()),
    ],
)
def test_every_distillation_type_is_scaled_by_t_squared(kind: str, plain) -> None:  # type: ignore[no-untyped-def]
    student, teacher = _pair()
    got = distillation_loss(student, teacher, kind, 3.0)  # type: ignore[arg-type]
    assert torch.allclose(got, plain(student, teacher) * 9.0, atol=1e-6)


@pytest.mark.parametrize("kind", ["smooth_l1", "kl", "mse", "cosine"])
def test_teacher_is_not_detached(kind: str) -> None:
    student, teacher = (t.requires_grad_() for t in _pair())
    distillation_loss(student, teacher, kind, 2.0).backward()  # type: ignore[arg-type]
    assert teacher.grad is not None and teacher.grad.abs().sum() > 0
    assert student.grad is not None and student.grad.abs().sum() > 0


def test_identical_ensembles_have_zero_distance() -> None:
    student, _ = _pair()
    for kind in ("smooth_l1", "kl", "mse"):
        assert distillation_loss(student, student.clone(), kind, 2.0).abs() < 1e-6  # type: ignore[arg-type]


def test_regularizer_decays_linearly_from_the_first_cycle() -> None:
    # Official CIFAR: P=2, I=32, E_it=1, r=0.667 -> 5 at epoch 2, zero from epoch ~22 on.
    def coefficient(epoch: int) -> float:
        return regularizer_coefficient(epoch, 5.0, 2, 32, 1, 0.667)

    assert coefficient(2) == pytest.approx(5.0)
    assert coefficient(12) == pytest.approx(5.0 * (1 - 10 / (30 * 0.667)))
    assert 0 < coefficient(22) < 0.01 and coefficient(23) == 0.0 and coefficient(31) == 0.0


def test_alpha_l1_penalty_sums_absolute_values_of_selected_columns() -> None:
    alphas = torch.tensor([[1.0, -2.0, 3.0], [-4.0, 5.0, 6.0]])
    assert alpha_l1_penalty([alphas, -alphas], [0, 1]).item() == pytest.approx(2 * (1 + 2 + 4 + 5))
