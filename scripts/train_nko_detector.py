#!/usr/bin/env python3
"""Train the local N'Ko detector and write the weights file shipped in the package.

    pip install -e '.[train]'      # torch (CPU build is enough), babel
    nice -n 15 python scripts/train_nko_detector.py --minutes-hint 30 \
        --out nkod/pipeline/detectors/nko_detector.npz

Data: synthetic 128x128 grey crops from ``bench/nko_data.py`` (training fonts and training words only;
the evaluation's held-out fonts, words and layouts never appear here). Crops are made as training goes:
the pool grows by ``--crops-per-round`` every ``--steps-per-round`` steps up to ``--pool``.
Deterministic for a given ``--seed`` and thread count (``--threads``). The weights are exported with
batch norm folded into the convolutions, checked against the numpy runtime on a random input, and
written every ``--export-every`` steps (so a long run has usable weights early).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import nko_data  # noqa: E402

from nkod.pipeline.detectors.nko_net import NkoNet  # noqa: E402

# (out channels, kernel, stride, dilation) per layer; the last is the 4-class 1x1 head.
ARCH = [
    (16, 3, 2, 1),
    (32, 3, 2, 1),
    (64, 3, 2, 1),
    (64, 3, 1, 1),
    (64, 3, 1, 2),
    (64, 3, 1, 4),
    (64, 3, 1, 1),
    (4, 1, 1, 1),
]
CLASS_WEIGHTS = (1.0, 2.0, 1.0, 1.0)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for i, (cout, k, s, d) in enumerate(ARCH):
            last = i == len(ARCH) - 1
            layers.append(nn.Conv2d(cin, cout, k, stride=s, padding=d * (k // 2), dilation=d, bias=last))
            if not last:
                layers += [nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            cin = cout
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.body(x)
        return out


def load_folded(net: Net, path: Path) -> None:
    """Start from an exported weights file: convolutions get the folded weights and each batch norm
    becomes the identity plus the folded bias (exact as long as batch norm stays in eval mode)."""
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    convs = [m for m in net.body if isinstance(m, nn.Conv2d)]
    bns = [m for m in net.body if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for i, conv in enumerate(convs):
            k, cin, cout = conv.kernel_size[0], conv.in_channels, conv.out_channels
            w = torch.from_numpy(arrays[f"w{i}"]).reshape(k, k, cin, cout).permute(3, 2, 0, 1)
            conv.weight.copy_(w)
            b = torch.from_numpy(arrays[f"b{i}"])
            if i < len(bns):
                bn = bns[i]
                assert bn.running_mean is not None and bn.running_var is not None
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)
                bn.weight.fill_(1.0)
                bn.bias.copy_(b)
            else:
                assert conv.bias is not None
                conv.bias.copy_(b)


def export(net: Net, path: Path, meta: dict[str, object]) -> None:
    """Fold batch norm into the convolutions and write the npz the runtime loads."""
    net.eval()
    arrays: dict[str, np.ndarray] = {}
    mods = list(net.body)
    i = li = 0
    spec = []
    while i < len(mods):
        conv = mods[i]
        assert isinstance(conv, nn.Conv2d)
        w = conv.weight.detach().double()
        b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
        i += 1
        if i < len(mods) and isinstance(mods[i], nn.BatchNorm2d):
            bn = mods[i]
            assert isinstance(bn, nn.BatchNorm2d) and bn.running_var is not None and bn.running_mean is not None
            scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
            w = w * scale[:, None, None, None]
            b = (b - bn.running_mean.double()) * scale + bn.bias.detach().double()
            i += 2  # BatchNorm2d, ReLU
        k = w.shape[2]
        # (out, in, ky, kx) -> (ky, kx, in, out) -> (k*k*in, out): the runtime's im2col order.
        arrays[f"w{li}"] = w.permute(2, 3, 1, 0).reshape(k * k * w.shape[1], w.shape[0]).float().numpy()
        arrays[f"b{li}"] = b.float().numpy()
        spec.append({"kernel": k, "stride": conv.stride[0], "dilation": conv.dilation[0]})
        li += 1
    arch = {"layers": spec, "classes": ["background", "nko", "latin_or_other", "arabic"], **meta}
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, arch=np.array(json.dumps(arch, sort_keys=True)), **arrays)
    # The numpy runtime must give what torch gives (same layout, same padding).
    probe = np.random.default_rng(0).random((72, 136), dtype=np.float32)
    with torch.no_grad():
        want = torch.softmax(net(torch.from_numpy(probe)[None, None]), dim=1)[0].permute(1, 2, 0).numpy()
    got = NkoNet.load(tmp).probabilities(probe)
    if got.shape != want.shape or float(np.abs(got - want).max()) > 1e-4:
        raise SystemExit(f"numpy runtime disagrees with torch: {got.shape} vs {want.shape}")
    tmp.replace(path)
    if not getattr(net, "frozen_bn", False):
        net.train()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "nkod/pipeline/detectors/nko_detector.npz")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--steps", type=int, default=7000)
    p.add_argument("--batch", type=int, default=48)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--pool", type=int, default=30000, help="most crops kept")
    p.add_argument("--initial-crops", type=int, default=4000)
    p.add_argument("--crops-per-round", type=int, default=1000)
    p.add_argument("--steps-per-round", type=int, default=150)
    p.add_argument("--export-every", type=int, default=500)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--init", type=Path, help="fine-tune from this exported weights file (batch norm frozen)")
    p.add_argument("--p-nko", type=float, default=0.45, help="chance that a text line of a crop is N'Ko")
    args = p.parse_args(argv)

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    data_rng = np.random.default_rng(args.seed)
    batch_rng = np.random.default_rng(args.seed + 1)

    def more(n: int) -> tuple[np.ndarray, np.ndarray]:
        xs = np.zeros((n, nko_data.CROP, nko_data.CROP), np.uint8)
        ys = np.zeros((n, nko_data.CROP // nko_data.CELL, nko_data.CROP // nko_data.CELL), np.uint8)
        for j in range(n):
            xs[j], ys[j] = nko_data.training_crop(data_rng, args.p_nko)
        return xs, ys

    t0 = time.monotonic()
    pool_x, pool_y = more(args.initial_crops)
    print(f"{args.initial_crops} crops in {time.monotonic() - t0:.0f}s", flush=True)
    net = Net()
    if args.init:
        load_folded(net, args.init)
        net.eval()  # batch norm frozen: its statistics are folded in already
        net.frozen_bn = True  # type: ignore[assignment]
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.05)
    loss_fn = nn.CrossEntropyLoss(weight=torch.tensor(CLASS_WEIGHTS), ignore_index=nko_data.IGNORE)
    running = 0.0
    for step in range(1, args.steps + 1):
        if step % args.steps_per_round == 0 and len(pool_x) < args.pool:
            nx, ny = more(args.crops_per_round)
            pool_x, pool_y = np.concatenate([pool_x, nx]), np.concatenate([pool_y, ny])
        idx = batch_rng.integers(0, len(pool_x), args.batch)
        x = torch.from_numpy(pool_x[idx]).float().div_(255.0)[:, None]
        # Cheap extra variety: inverted polarity and contrast/brightness changes.
        flip = torch.from_numpy(batch_rng.random(args.batch) < 0.3)[:, None, None, None]
        x = torch.where(flip, 1.0 - x, x)
        gain = torch.from_numpy(batch_rng.uniform(0.6, 1.2, args.batch).astype(np.float32))[:, None, None, None]
        bias = torch.from_numpy(batch_rng.uniform(-0.15, 0.15, args.batch).astype(np.float32))[:, None, None, None]
        x = ((x - 0.5) * gain + 0.5 + bias).clamp_(0, 1)
        y = torch.from_numpy(pool_y[idx]).long()
        loss = loss_fn(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        running = float(loss) if step == 1 else 0.98 * running + 0.02 * float(loss)
        if step % 50 == 0:
            print(f"step {step} loss {running:.4f} pool {len(pool_x)} {time.monotonic() - t0:.0f}s", flush=True)
        if step % args.export_every == 0 or step == args.steps:
            meta = {"version": f"seed{args.seed}-step{step}", "steps": step, "crops": len(pool_x)}
            if args.init:
                meta["version"] = f"{args.init.stem}+finetune-seed{args.seed}-step{step}"
            export(net, args.out, meta)
            print(f"exported {args.out} at step {step}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
