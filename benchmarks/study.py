"""The seed's two studies, reproducible: optimisers (SGD, Nesterov, Adagrad, Adadelta, Adam with
torch defaults) and plain vs residual blocks — same data, same budget, several seeds each —
and issue 13's front-end questions on the 13-label data and mix of a recipe (``--recipe``):
``hop``, the CQT hop (512 samples = 32 ms vs 256 = 16 ms); ``frontend``, today's band (16 kHz,
84 bins C1–B7, top 3.95 kHz) vs a wider one (24 kHz input, 97 bins C1–C9, top 8.37 kHz, hop 768
= the same 32 ms) vs two seconds of context before the window (the output still scores the
latest second). Scored on validation and, with ``--dev``, on the real dev set and its mixtures
(reported, never used to choose thresholds).

    python benchmarks/study.py optimizers --steps 800 --val-every 100 --seeds 0 1 2 --threads 1 \
        --real ../shared/data/real-train --rendered runs/render-train/manifest.jsonl
    python benchmarks/study.py blocks --steps 800 --val-every 100 --seeds 0 1 2 --threads 1 \
        --plain-from benchmarks/results/study-optimizers.json ...
    python benchmarks/study.py hop --recipe models/recipes/neuroear-v4.json --steps 1200 --val-every 200 \
        --seeds 0 1 --dev ../shared/data/real-dev --real ../shared/data/real-train --rendered runs/render-train/manifest.jsonl
    python benchmarks/study.py frontend --recipe models/recipes/neuroear-v4.json --steps 1000 --val-every 250 \
        --seeds 0 1 --dev ../shared/data/real-dev --real ../shared/data/real-train --rendered runs/render-train/manifest.jsonl

Writes benchmarks/results/study-<what>.json (every run's loss curves and scores) and
benchmarks/results/study-<what>.png (training and validation loss, mean ± spread over seeds).
Scores come from the validation split (held-out renders + held-out real-train files), never
the real dev set. Not imported by the package.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def plateau_step(history: list[dict], *, tol: float = 0.02) -> int:
    """First validation step whose loss is within ``tol`` (relative) of the run's best."""
    losses = np.array([h["val_loss"] for h in history])
    best = losses.min()
    return int(history[int(np.argmax(losses <= best * (1 + tol)))]["step"])


def reused_plain_runs(path: Path, steps: int, seeds: list[int], val_every: int) -> list[dict]:
    """The optimizers study's Adam runs as the blocks study's plain arm: Adam on plain blocks
    with the same data, steps and seeds is exactly that run, so training it again only costs time."""
    old = json.loads(path.read_text())
    if old.get("study") != "optimizers" or old.get("steps") != steps:
        raise SystemExit(f"{path}: not an optimizers study of {steps} steps")
    runs = [dict(r, variant="plain") for r in old["runs"] if r["variant"] == "adam" and r["seed"] in seeds]
    if {r["seed"] for r in runs} != set(seeds) or any(r["history"][0]["step"] != val_every for r in runs):
        raise SystemExit(f"{path}: its Adam runs do not cover seeds {seeds} at --val-every {val_every}")
    return runs


def dev_windows(dev: str, cfg) -> dict[str, tuple[np.ndarray, list[list[str]]]]:
    """The real dev set's solo windows and its mixtures (benchmarks/mixtures.py), at the training framing."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import mixtures as M

    rate = cfg.cqt.sample_rate
    context = cfg.cqt.input_samples - cfg.cqt.window_samples
    sets = M.dev_sets(Path(dev), rate, rate, n=300, seed=0, context=context)  # one-second windows, mixtures.py's defaults
    return {"dev": sets["dev-solo"], "dev_mixtures": sets["dev-mixtures"]}


DEV_METRICS = ("macro_f1", "exact_set", "false_per_window")


def score_dev(res, sets: dict) -> dict[str, float]:
    """``<set>_<metric>`` of a trained run (torch, its calibrated thresholds) on each of ``sets``:
    macro F1, exact-set rate and false labels per window (mixtures.score)."""
    if not sets:
        return {}
    import mixtures as M

    from neuroear.training import train as T

    class Net:  # what mixtures.score needs of a detector
        labels = res.model.labels
        thresholds = np.array([res.thresholds[lab] for lab in res.model.labels], dtype=np.float32)

        @staticmethod
        def predict(x: np.ndarray) -> np.ndarray:
            return T._predict(res.model, x.astype(np.float32))

    scores = {name: M.score(Net, x, t) for name, (x, t) in sets.items()}
    return {f"{name}_{m}": sc[m] for name, sc in scores.items() for m in DEV_METRICS}


def main() -> None:
    from neuroear.training import train as T

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["optimizers", "blocks", "hop", "frontend"])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--real", action="append", default=[])
    ap.add_argument("--rendered", action="append", default=[])
    ap.add_argument("--val-every", type=int, default=50)
    ap.add_argument("--cache", default="runs/cache")
    ap.add_argument("--threads", type=int, default=2, help="torch threads per run")
    ap.add_argument(
        "--plain-from",
        help="blocks only: take the plain arm from this optimizers-study JSON (its Adam runs are the same runs)",
    )
    ap.add_argument("--recipe", help="hop, frontend: labels and mix from this training config (JSON)")
    ap.add_argument("--dev", help="hop, frontend: also score each run on this real dev set and on mixtures of it")
    ap.add_argument("--variants", nargs="+", help="frontend: run only these arms (default: all)")
    ap.add_argument("--append", action="store_true", help="frontend: keep the runs already in results/study-frontend.json (more seeds)")
    args = ap.parse_args()

    base = T.TrainConfig(
        real=tuple(args.real),
        rendered=tuple(args.rendered),
        steps=args.steps,
        val_every=args.val_every,
        val_windows=600,
        schedule="constant",
        ema=0.0,
        threads=args.threads,
    )
    if args.recipe:
        recipe = T.TrainConfig.from_dict(json.loads(Path(args.recipe).read_text()))
        base = replace(base, labels=recipe.labels, mix=recipe.mix, cqt=recipe.cqt, net=recipe.net)
    if args.what == "frontend":
        variants = {
            "base": {"cqt": base.cqt},
            "wide24k": {"cqt": replace(base.cqt, sample_rate=24_000, hop_length=768, n_bins=97)},
            "context2s": {"cqt": replace(base.cqt, context_seconds=2.0)},
        }
        old, earlier = [], ""
        if args.append and (RESULTS / "study-frontend.json").is_file():
            prev = json.loads((RESULTS / "study-frontend.json").read_text())
            old, earlier = prev["runs"], prev["command"]
        todo = {k: v for k, v in variants.items() if not args.variants or k in args.variants}
        runs = old + frontend_runs(base, todo, args, skip={(r["variant"], r["seed"]) for r in old})
        args.seeds = sorted({r["seed"] for r in runs})
        write_results(args, base, {k: v for k, v in variants.items() if any(r["variant"] == k for r in runs)}, runs, earlier=earlier)
        return
    clips = T.load_clips(base, Path(args.cache))  # decoded once, shared by every run
    dev_sets = dev_windows(args.dev, base) if args.dev else {}
    if args.what == "hop":
        variants = {"hop512": {"cqt": base.cqt}, "hop256": {"cqt": replace(base.cqt, hop_length=base.cqt.hop_length // 2)}}
    elif args.what == "optimizers":
        variants = {name: {"optimizer": name} for name in T.OPTIMIZERS}
    else:
        variants = {"plain": {"net": base.net}, "residual": {"net": replace(base.net, residual=True)}}
    runs = []
    if args.what == "blocks" and args.plain_from:
        runs = reused_plain_runs(Path(args.plain_from), args.steps, args.seeds, args.val_every)
    for name, change in variants.items():
        for seed in args.seeds:
            if any(r["variant"] == name and r["seed"] == seed for r in runs):
                continue
            runs.append(one_run(replace(base, seed=seed, **change), name, clips, dev_sets))
    write_results(args, base, variants, runs)


def one_run(cfg, name: str, clips, dev_sets: dict) -> dict:
    """Train ``cfg`` on ``clips``; its scores on validation and on ``dev_sets``."""
    from neuroear.training import train as T

    t0 = time.time()
    res = T.train(cfg, clips=clips, log=lambda s: None)
    run = {
        "variant": name,
        "seed": cfg.seed,
        "seconds": round(time.time() - t0, 1),
        "history": res.history,
        "val_macro_f1_at_0.5": res.history[-1]["val_macro_f1"],
        "val_macro_f1_calibrated": res.val["calibrated"]["macro"]["f1"],
        "plateau_step": plateau_step(res.history),
        **score_dev(res, dev_sets),
    }
    print(json.dumps({k: v for k, v in run.items() if k != "history"}), flush=True)
    return run


def frontend_runs(base, variants: dict, args, *, skip: set = frozenset()) -> list[dict]:
    """Every arm × seed not in ``skip`` ((variant, seed) pairs); clips and dev windows are rebuilt only
    when the arm's rate or context changes (the same recordings and renders, decoded at the arm's rate)."""
    from neuroear.training import train as T

    runs, loaded = [], {}
    for name, change in variants.items():
        if all((name, seed) in skip for seed in args.seeds):
            continue
        cfg0 = replace(base, **change)
        key = (cfg0.cqt.sample_rate, cfg0.cqt.context_seconds)
        if key not in loaded:
            loaded.clear()  # one rate's clips in memory at a time
            loaded[key] = (T.load_clips(cfg0, Path(args.cache)), dev_windows(args.dev, cfg0) if args.dev else {})
        clips, dev_sets = loaded[key]
        for seed in args.seeds:
            if (name, seed) not in skip:
                runs.append(one_run(replace(cfg0, seed=seed), name, clips, dev_sets))
    return runs


def write_results(args, base, variants: dict, runs: list[dict], *, earlier: str = "") -> None:
    """benchmarks/results/study-<what>.{json,png}: every run, and the mean ± spread per arm
    (``earlier``: the command of runs kept from a previous file, recorded before this one)."""
    from neuroear.training.export import git_commit

    dev_keys = sorted({k for r in runs for k in r if k.startswith("dev")})
    summary = {}
    for name in variants:
        rs = [r for r in runs if r["variant"] == name]
        f1 = np.array([r["val_macro_f1_calibrated"] for r in rs])
        pl = np.array([r["plateau_step"] for r in rs])
        summary[name] = {
            **{f"{k}_mean": float(np.mean([r[k] for r in rs])) for k in dev_keys},
            **{f"{k}_std": float(np.std([r[k] for r in rs])) for k in dev_keys},
            "val_macro_f1_mean": float(f1.mean()),
            "val_macro_f1_std": float(f1.std()),
            "plateau_step_mean": float(pl.mean()),
            "plateau_step_std": float(pl.std()),
            "seconds_mean": float(np.mean([r["seconds"] for r in rs])),
        }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {
        "study": args.what,
        "command": " && ".join(c for c in (earlier, "python benchmarks/study.py " + " ".join(__import__("sys").argv[1:])) if c),
        "steps": args.steps,
        "seeds": args.seeds,
        "batch": base.batch,
        "optimizer_settings": "torch defaults (SGD/Nesterov lr 0.01, Nesterov momentum 0.9), constant learning rate",
        "data": "validation split: held-out rendered clips + held-out real-train files",
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
        "commit": git_commit(),
        "summary": summary,
        "runs": runs,
    }
    (RESULTS / f"study-{args.what}.json").write_text(json.dumps(out, indent=1) + "\n")
    plot(runs, list(variants), RESULTS / f"study-{args.what}.png", title=f"{args.what}: {len(args.seeds)} seeds × {args.steps} steps of 32 windows")
    for name, s in summary.items():
        dev = "  ".join(f"{k} {s[k + '_mean']:.3f} ± {s[k + '_std']:.3f}" for k in dev_keys)
        print(f"{name:10s} F1 {s['val_macro_f1_mean']:.3f} ± {s['val_macro_f1_std']:.3f}   plateau step {s['plateau_step_mean']:.0f} ± {s['plateau_step_std']:.0f}  {dev}")


def plot(runs: list[dict], variants: list[str], out: Path, *, title: str) -> None:
    """Training and validation loss against steps, mean with min–max band over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=110, sharey=True)
    for i, name in enumerate(variants):
        rs = [r for r in runs if r["variant"] == name]
        steps = [h["step"] for h in rs[0]["history"]]
        for ax, key in zip(axes, ("train_loss", "val_loss")):
            y = np.array([[h[key] for h in r["history"]] for r in rs])
            ax.plot(steps, y.mean(0), label=name, color=f"C{i}")
            ax.fill_between(steps, y.min(0), y.max(0), color=f"C{i}", alpha=0.2)
    for ax, t in zip(axes, ("training loss (running mean)", "validation loss")):
        ax.set_title(t, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("BCE")
    axes[1].legend()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


if __name__ == "__main__":
    main()
