"""The DetCon-B InfoNCE against hand computations, and its negatives gathered across two CPU DDP ranks."""

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn import functional as F

from sonofm.methods.aclus.loss import context_loss, detcon_loss


def brute_force(q_a, q_b, z_a, z_b, ids, valid, temperature):
    """The loss written out row by row, as its docstring states it."""
    total = 0.0
    for q, other, same in ((q_a, z_b, z_a), (q_b, z_a, z_b)):
        rows, weights = [], []
        for n in range(q.shape[0]):
            for k in range(q.shape[1]):
                query = F.normalize(q[n, k], dim=0)
                logits, positive = [], []
                for bank, is_other in ((other, True), (same, False)):
                    for m in range(bank.shape[0]):
                        for j in range(bank.shape[1]):
                            match = m == n and ids[m, j] == ids[n, k]
                            if match and not is_other:
                                continue  # same image, same id, same view: left out
                            logits.append(float(query @ F.normalize(bank[m, j], dim=0)) / temperature)
                            positive.append(match and is_other)
                log_z = math.log(sum(math.exp(value) for value in logits))
                positives = [value for value, flag in zip(logits, positive) if flag]
                rows.append(-sum(value - log_z for value in positives) / max(1, len(positives)))
                duplicates = int((ids[n] == ids[n, k]).sum())
                weights.append(float(valid[n]) / duplicates)
        total += sum(w * r for w, r in zip(weights, rows)) / sum(weights)
    return total


def test_matches_a_closed_form_on_a_tiny_case():
    eye = torch.eye(2)[None]  # one image, two anatomies with orthogonal embeddings
    flipped = eye.flip(-1)
    loss = detcon_loss(eye, flipped, eye, eye, torch.tensor([[1, 2]]), torch.tensor([True]), temperature=0.5)
    e2 = math.exp(2)
    expected = -math.log(e2 / (e2 + 2)) + math.log(1 + 2 * e2)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_matches_the_brute_force_definition_with_duplicates_and_invalid_images():
    generator = torch.Generator().manual_seed(0)
    q_a, q_b, z_a, z_b = (torch.randn(3, 4, 5, generator=generator) for _ in range(4))
    ids = torch.tensor([[1, 1, 2, 3], [0, 4, 4, 4], [7, 7, 7, 7]])  # duplicates, as sampling with replacement gives
    valid = torch.tensor([True, True, False])
    loss = detcon_loss(q_a, q_b, z_a, z_b, ids, valid, temperature=0.1)
    assert loss.item() == pytest.approx(brute_force(q_a, q_b, z_a, z_b, ids, valid, 0.1), rel=1e-4)


def test_context_loss_is_zero_for_aligned_embeddings_and_ignores_invalid_images():
    x = torch.randn(2, 3, 8)
    assert context_loss(x, 5 * x, torch.tensor([True, True])).item() == pytest.approx(0, abs=1e-6)
    assert context_loss(x, -x, torch.tensor([True, False])).item() == pytest.approx(4, rel=1e-5)


def _rank_loss(rank: int, world: int, init_file: str, inputs: tuple, results) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    q_a, q_b, z_a, z_b, ids, valid = (tensor.chunk(world)[rank] for tensor in inputs)
    q_a = q_a.clone().requires_grad_(True)
    loss = detcon_loss(q_a, q_b, z_a, z_b, ids, valid, temperature=0.1)
    loss.backward()
    results[rank] = (loss.item(), q_a.grad.clone())
    dist.destroy_process_group()


def test_two_cpu_ranks_gather_negatives_from_each_other(tmp_path):
    generator = torch.Generator().manual_seed(1)
    q_a, q_b, z_a, z_b = (torch.randn(4, 3, 6, generator=generator) for _ in range(4))
    ids = torch.tensor([[1, 2, 3]] * 4)
    valid = torch.ones(4, dtype=torch.bool)
    inputs = (q_a, q_b, z_a, z_b, ids, valid)
    results = mp.Manager().dict()
    mp.spawn(_rank_loss, args=(2, str(tmp_path / "init"), inputs, results), nprocs=2, join=True)

    full_q_a = q_a.clone().requires_grad_(True)
    full = detcon_loss(full_q_a, q_b, z_a, z_b, ids, valid, temperature=0.1)
    (full * 2).backward()  # DDP averages the two ranks' gradients; each rank's rows are half of the batch
    assert (results[0][0] + results[1][0]) / 2 == pytest.approx(full.item(), rel=1e-5)
    torch.testing.assert_close(torch.cat([results[0][1], results[1][1]]), full_q_a.grad, rtol=1e-4, atol=1e-6)
    alone = detcon_loss(q_a[:2], q_b[:2], z_a[:2], z_b[:2], ids[:2], valid[:2], temperature=0.1)
    assert abs(alone.item() - results[0][0]) > 1e-3  # rank 0 saw rank 1's negatives
