"""Ablations for issue 5: one change at a time against the shipped recipe, at a reduced budget.

    python benchmarks/ablation.py run --base runs/v1/config.json --steps 1500 --out runs/abl
    python benchmarks/ablation.py collect runs/abl --out benchmarks/results/ablation.json

``run`` trains each variant (same data, seed and budget), exports it and measures it on the
held-out SoundFont family and the real dev set with the model's own thresholds (calibrated on
the validation split). ``collect`` gathers every ``runs/abl/<name>/{model.json,metrics.json}``
into one JSON table with Δ against ``base``. Model choices are made on the validation and
synthetic columns; the dev column is reported, never used to choose. One seed per variant:
PROBES.md measured ±0.05 macro F1 between checkpoints, so small differences are noise.
Not imported by the package.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

VARIANTS: dict[str, tuple[str, dict]] = {
    "base": ("neuroear-v1's recipe: log1p(1000·|C|) + per-window standardisation, NumPy augmentation", {}),
    "pcen": ("PCEN (librosa's parameters) instead of the log, then per-window standardisation", {"cqt": {"norm": "pcen"}}),
    "audiomentations": ("augmentation from audiomentations + pyroomacoustics rooms (+ pitch shift, time stretch)", {"mix": {"augment_library": "audiomentations"}}),
    "specmask": ("SpecAugment-style masking of CQT bands and frames in training", {"net": {"spec_mask": 8}}),
    "real70": ("70 % real recordings per batch instead of 50 %", {"mix": {"real_fraction": 0.7}}),
    "background": ("an unlabelled bed of 2–4 instruments 14–30 dB under 30 % of the labelled windows", {"mix": {"background_p": 0.3}}),
    "sqrtdur": ("clips picked with weight ∝ √duration instead of uniformly (more of the long real phrases)", {"mix": {"clip_weighting": "sqrt_duration"}}),
}

NOISE_CONDITIONS = ("babble 10 dB", "pink 10 dB")

SETS = {
    "synthetic": "runs/render-test-timgm/manifest.jsonl",
    "real-dev": "../shared/data/real-dev",
}


def _merge(base: dict, change: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in change.items():
        if isinstance(v, dict):
            out[k] = {**out.get(k, {}), **v}
        else:
            out[k] = v
    return out


def run(args: argparse.Namespace) -> None:
    base = json.loads(Path(args.base).read_text())
    base["steps"] = args.steps
    base["seed"] = args.seed
    if args.threads:
        base["threads"] = args.threads
    suffix = f"-s{args.seed}" if args.seed else ""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    exe = [sys.executable, "-m", "neuroear"]
    for name in args.only or list(VARIANTS):
        cfg = _merge(base, VARIANTS[name][1])
        d = out / f"{name}{suffix}"
        (out / f"{d.name}.json").write_text(json.dumps(cfg, indent=1) + "\n")
        subprocess.run([*exe, "train", "--config", str(out / f"{d.name}.json"), "--out", str(d)], check=True, cwd=ROOT)
        subprocess.run([*exe, "export", str(d / "checkpoint.pt"), "--out", str(d / "model.onnx")], check=True, cwd=ROOT)
        sets = [f"{'synthetic-heldout-timgm' if k == 'synthetic' else k}={v}" for k, v in SETS.items()]
        subprocess.run([sys.executable, "scripts/model_metrics.py", str(d / "model.onnx"), *sets, "--out", str(d / "metrics.json")], check=True, cwd=ROOT)


def _split(run_name: str) -> tuple[str, int]:
    """``"audiomentations-s1"`` → ("audiomentations", 1); ``"base"`` → ("base", 0)."""
    head, _, tail = run_name.rpartition("-s")
    return (head, int(tail)) if head and tail.isdigit() else (run_name, 0)


def collect(args: argparse.Namespace) -> None:
    rows = {}
    order = {name: i for i, name in enumerate(VARIANTS)}
    for d in sorted(Path(args.runs).iterdir(), key=lambda p: (_split(p.name)[1], order.get(_split(p.name)[0], len(order)), p.name)):
        if not (d / "model.json").is_file() or not (d / "metrics.json").is_file():
            continue
        card = json.loads((d / "model.json").read_text())
        m = json.loads((d / "metrics.json").read_text())
        hist = [json.loads(x) for x in (d / "history.jsonl").read_text().splitlines() if x.strip()]
        name = d.name
        variant = _split(name)[0]
        val = card["metrics"]["validation"]
        rows[name] = {
            "what": VARIANTS.get(variant, ("", {}))[0],
            "config_change": VARIANTS.get(variant, ("", {}))[1],
            "seed": card["training"]["seed"],
            "steps": card["training"]["steps"],
            "train_seconds": hist[-1]["seconds"] if hist else None,
            "val_calibrated_macro_f1": round(val["calibrated"]["macro"]["f1"], 4),
            "synthetic_macro_f1": m["synthetic-heldout-timgm"]["macro_f1"],
            "synthetic_top1": m["synthetic-heldout-timgm"]["top1"],
            "dev_macro_f1": m["real-dev"]["macro_f1"],
            "dev_top1": m["real-dev"]["top1"],
        }
        if (d / "noise.json").is_file():  # from benchmarks/noise.py --only clean babble:10 pink:10 --out NAME/noise.json
            res = json.loads((d / "noise.json").read_text())["results"]
            for cond in NOISE_CONDITIONS:
                for key, set_name in (("synthetic", "synthetic-heldout-timgm"), ("dev", "real-dev")):
                    if cond in res.get(set_name, {}):
                        rows[name][f"{key}_{cond.replace(' ', '')}_macro_f1"] = res[set_name][cond]["macro_f1"]
    for name, r in rows.items():  # Δ against the base run of the same seed
        ref = rows.get("base" if r["seed"] == 0 else f"base-s{r['seed']}")
        if ref is not None:
            for k in [k for k in r if k.endswith("macro_f1") and k in ref]:
                r[f"delta_{k}"] = round(r[k] - ref[k], 4)
    doc = {
        "note": "one seed per variant; val is drawn with each variant's own augmentation, so compare val only between variants with the same augmentation",
        "runs": rows,
    }
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print("| variant | val (cal.) | synthetic F1 / top-1 | Δ synth | real dev F1 / top-1 | Δ dev |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(
            f"| {name} | {r['val_calibrated_macro_f1']:.3f} | {r['synthetic_macro_f1']:.3f} / {r['synthetic_top1']:.3f} | "
            f"{r.get('delta_synthetic_macro_f1', 0):+.3f} | {r['dev_macro_f1']:.3f} / {r['dev_top1']:.3f} | {r.get('delta_dev_macro_f1', 0):+.3f} |"
        )
    noisy = [(n, r) for n, r in rows.items() if any("dB" in k for k in r)]
    if noisy:
        keys = [f"{s}_{c.replace(' ', '')}_macro_f1" for c in NOISE_CONDITIONS for s in ("synthetic", "dev")]
        print("\n| variant | " + " | ".join(k.removesuffix("_macro_f1").replace("_", " ") + " (Δ)" for k in keys) + " |")
        print("|---|" + "---:|" * len(keys))
        for name, r in noisy:
            cells = [f"{r[k]:.3f} ({r.get('delta_' + k, 0):+.3f})" if k in r else "–" for k in keys]
            print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--base", default="runs/v1/config.json")
    r.add_argument("--steps", type=int, default=1500)
    r.add_argument("--out", default="runs/abl")
    r.add_argument("--only", nargs="+", choices=list(VARIANTS))
    r.add_argument("--seed", type=int, default=0, help="training seed; runs of seed N go to NAME-sN")
    r.add_argument("--threads", type=int, help="torch threads per run (default: the base config's)")
    r.set_defaults(func=run)
    c = sub.add_parser("collect")
    c.add_argument("runs", nargs="?", default="runs/abl")
    c.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ablation.json"))
    c.set_defaults(func=collect)
    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
