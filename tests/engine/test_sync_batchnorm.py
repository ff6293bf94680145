"""GlobalBatchNorm: plain BatchNorm without a process group; under 2 gloo processes, each holding half a batch, the
outputs, input gradients, summed weight gradients and running statistics of whole-batch BatchNorm."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from sonofm.engine.sync_batchnorm import GlobalBatchNorm, GlobalBatchNormSync, to_global_batchnorm

BATCH = torch.randn(6, 3, 5, 4, generator=torch.Generator().manual_seed(0)) * 3 + 1
UPSTREAM = torch.randn(6, 3, 5, 4, generator=torch.Generator().manual_seed(1))


def _reference(momentum: float | None = 0.1) -> tuple[nn.BatchNorm2d, torch.Tensor, torch.Tensor]:
    """Whole-batch BatchNorm after one training step: the layer, its output and the input gradient."""
    torch.manual_seed(2)
    norm = nn.BatchNorm2d(3, momentum=momentum)
    nn.init.normal_(norm.weight)
    nn.init.normal_(norm.bias)
    batch = BATCH.clone().requires_grad_()
    out = norm(batch)
    (out * UPSTREAM).sum().backward()
    return norm, out.detach(), batch.grad


def test_without_a_process_group_it_is_batchnorm():
    reference, out, grad = _reference()
    torch.manual_seed(2)
    model = to_global_batchnorm(nn.Sequential(nn.BatchNorm2d(3)))
    norm = model[0]
    assert isinstance(norm, GlobalBatchNorm)
    nn.init.normal_(norm.weight)
    nn.init.normal_(norm.bias)
    batch = BATCH.clone().requires_grad_()
    result = norm(batch)
    (result * UPSTREAM).sum().backward()
    assert torch.allclose(result, out, atol=1e-5)
    assert torch.allclose(batch.grad, grad, atol=1e-5)
    assert torch.allclose(norm.running_var, reference.running_var)


def test_conversion_keeps_tensors_keys_and_classes():
    model = nn.Sequential(nn.Conv2d(1, 3, 1), nn.BatchNorm2d(3), nn.Sequential(nn.BatchNorm1d(4)))
    model[2].eval()
    weight, buffer, keys = model[1].weight, model[2][0].running_mean, list(model.state_dict())
    plugin = GlobalBatchNormSync(on_cuda=False)
    synced = plugin.apply(model)
    assert [type(m) for m in (synced[1], synced[2][0])] == [GlobalBatchNorm, GlobalBatchNorm]
    assert synced[1].weight is weight and synced[2][0].running_mean is buffer
    assert list(synced.state_dict()) == keys
    assert not synced[2][0].training
    plain = plugin.revert(synced)
    assert [type(m) for m in (plain[1], plain[2][0])] == [nn.BatchNorm2d, nn.BatchNorm1d]
    assert plain[1].weight is weight and list(plain.state_dict()) == keys
    assert not plain[2][0].training


def _rank(rank: int, init_file: str, momentum: float | None, results: dict) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    torch.manual_seed(2)
    norm = GlobalBatchNorm(3, momentum=momentum)
    nn.init.normal_(norm.weight)
    nn.init.normal_(norm.bias)
    half = BATCH[rank * 3:(rank + 1) * 3].clone().requires_grad_()
    out = norm(half)
    (out * UPSTREAM[rank * 3:(rank + 1) * 3]).sum().backward()
    results[rank] = {"out": out.detach(), "grad": half.grad, "weight_grad": norm.weight.grad,
                     "running_mean": norm.running_mean, "running_var": norm.running_var}
    dist.destroy_process_group()


@pytest.mark.parametrize("momentum", [0.1, None])
def test_two_gloo_ranks_equal_whole_batch_batchnorm(tmp_path, momentum):
    reference, out, grad = _reference(momentum)
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_rank, args=(str(tmp_path / "init"), momentum, results), nprocs=2)
        ranks = [results[0], results[1]]
    assert torch.allclose(torch.cat([r["out"] for r in ranks]), out, atol=1e-5)
    assert torch.allclose(torch.cat([r["grad"] for r in ranks]), grad, atol=1e-5)
    assert torch.allclose(ranks[0]["weight_grad"] + ranks[1]["weight_grad"], reference.weight.grad, atol=1e-4)
    for rank in ranks:
        assert torch.allclose(rank["running_mean"], reference.running_mean, atol=1e-6)
        assert torch.allclose(rank["running_var"], reference.running_var, atol=1e-5)
