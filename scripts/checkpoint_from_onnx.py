"""Rebuild a trainable checkpoint from a shipped ONNX model, so it can be fine-tuned.

Checkpoints live in the git-ignored ``runs/`` and are not shipped; the ONNX file is. Its
export folded each BatchNorm into the conv before it (conv weight·γ/σ, bias β − μγ/σ), so the
BN parameters cannot be read back. They are rebuilt so that the net computes the same function
in eval mode AND, to first order, in training mode: a forward pass over real windows measures
each conv's (unbiased) output mean μ and spread σ per channel; then γ = σ, β = μ + b, running
mean μ and running variance σ². Training-mode BN then normalises by batch statistics and
lands on the folded output, so fine-tuning starts from the shipped model rather than from
a net whose every layer was rescaled.

    python scripts/checkpoint_from_onnx.py models/previous/neuroear-v3.onnx runs/v3/checkpoint.pt \
        --windows ../shared/data/real-train

Checks itself: max |Δp| between the rebuilt torch model and ONNX Runtime on the windows.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("onnx", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--windows", type=Path, required=True, help="folder of real audio (subfolders) for BN statistics")
    ap.add_argument("--n", type=int, default=384, help="windows for the statistics")
    args = ap.parse_args(argv)

    import onnx
    import onnxruntime as ort
    import torch
    from onnx import numpy_helper

    from neuroear import audio
    from neuroear.training.data import read_labelled
    from neuroear.training.features import CQTConfig
    from neuroear.metadata import METADATA_KEY
    from neuroear.training.model import InstrumentNet, NetConfig

    m = onnx.load(str(args.onnx))
    card = json.loads(next(p.value for p in m.metadata_props if p.key == METADATA_KEY))
    cfg = card["training"]
    labels = tuple(card["labels"])
    det = InstrumentNet(labels, CQTConfig(**cfg["cqt"]), NetConfig.from_dict(cfg["net"]))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    # the exported wrapper's attribute names the weights: "detector." up to v3, "net." since the layout change
    prefix = next((p for p in ("net.", "detector.") if f"{p}cnn.head.weight" in inits), None)
    if prefix is None:
        raise SystemExit(f"{args.onnx}: no classifier weights (…cnn.head.weight) among the graph's initializers")
    att = f"{prefix}cnn.att.weight"  # the attention head's 1x1 conv has no BN to rebuild: copied as it is
    convs = [n for n in m.graph.node if n.op_type == "Conv" and n.input[1] in inits and inits[n.input[1]].ndim == 4 and n.input[1] != att]
    t_convs = [mod for mod in det.cnn.features.modules() if isinstance(mod, torch.nn.Conv2d)]
    t_bns = [mod for mod in det.cnn.modules() if isinstance(mod, torch.nn.BatchNorm2d)]
    if len(convs) != len(t_convs) or len(t_bns) != len(t_convs):
        raise SystemExit(f"{args.onnx}: {len(convs)} CNN convs in the graph, {len(t_convs)} in the net")
    bias = []
    with torch.no_grad():
        for node, conv, bn in zip(convs, t_convs, t_bns):
            w, b = inits[node.input[1]], inits[node.input[2]]
            conv.weight.copy_(torch.from_numpy(w.copy()))
            bn.weight.fill_(1.0)
            bn.bias.copy_(torch.from_numpy(b))
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
            bias.append(torch.from_numpy(b.copy()))
        det.cnn.head.weight.copy_(torch.from_numpy(inits[f"{prefix}cnn.head.weight"]))
        det.cnn.head.bias.copy_(torch.from_numpy(inits[f"{prefix}cnn.head.bias"]))
        if det.cnn.att is not None:
            det.cnn.att.weight.copy_(torch.from_numpy(inits[att]))
            det.cnn.att.bias.copy_(torch.from_numpy(inits[f"{prefix}cnn.att.bias"]))
        for name in ("cqt_kernels_real", "cqt_kernels_imag", "lowpass_gemm"):
            ours, theirs = getattr(det.frontend.cqt, name), inits[f"{prefix}frontend.cqt.{name}"]
            # library versions round the filters differently (~1e-5 of their peak); more is another CQT
            if np.abs(ours.numpy() - theirs).max() > 1e-4 * np.abs(theirs).max():
                raise SystemExit(f"front end buffer {name} differs from the graph's: not the same CQT")
            ours.copy_(torch.from_numpy(theirs.copy()))

    # windows: one second from each of n real files, spread over the labels
    rng = np.random.default_rng(0)
    pairs = read_labelled(args.windows)
    pick = rng.choice(len(pairs), size=min(args.n, len(pairs)), replace=False)
    win, rate = card["window_samples"], card["sample_rate"]
    xs = []
    for i in pick:
        x = audio.load(pairs[int(i)][0], sample_rate=rate)
        if x.size < win:
            continue
        s = int(rng.integers(0, x.size - win + 1))
        xs.append(x[s : s + win])
    x = np.stack(xs).astype(np.float32)

    sess = ort.InferenceSession(str(args.onnx), providers=["CPUExecutionProvider"])
    want = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    det.eval()
    zs: list[torch.Tensor] = []
    hooks = [conv.register_forward_hook(lambda _m, _i, out: zs.append(out.detach())) for conv in t_convs]
    with torch.no_grad():
        got = torch.sigmoid(det(torch.from_numpy(x))).numpy()
    for h in hooks:
        h.remove()
    folded = float(np.abs(got - want).max())
    with torch.no_grad():
        for z, bn, b in zip(zs, t_bns, bias):
            mu = z.mean(dim=(0, 2, 3))
            sd = z.std(dim=(0, 2, 3)).clamp_min(1e-4)
            bn.weight.copy_(sd)
            bn.bias.copy_(mu + b)
            bn.running_mean.copy_(mu)
            bn.running_var.copy_(sd**2 - bn.eps)
        got = torch.sigmoid(det(torch.from_numpy(x))).numpy()
    rebuilt = float(np.abs(got - want).max())
    print(f"{len(x)} windows: max |Δp| torch vs ORT {folded:.2e} (folded BN), {rebuilt:.2e} (rebuilt BN)")
    if rebuilt > 1e-3:
        raise SystemExit("rebuilt model does not match the ONNX graph")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "state_dict": det.state_dict(),
            "labels": list(labels),
            "cqt": cfg["cqt"],
            "net": cfg["net"],
            "config": cfg,
            "thresholds": card.get("thresholds", {}),
            "val": {},
            "seconds": 0.0,
            "from_onnx": str(args.onnx),
        },
        str(args.out),
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
