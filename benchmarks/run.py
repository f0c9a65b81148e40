#!/usr/bin/env python
"""Run every Neuro-Ear benchmark in one process and write one JSON result (+ a markdown table).

    python benchmarks/run.py                      # full run (~7 min on 2 cores), writes benchmarks/results/<cpus>cpu-<date>.json
    python benchmarks/run.py --quick --out /tmp/b.json   # smoke run: tiny repeat counts, seconds
    neuroear bench [same options]                 # the same, from the CLI (needs the source checkout)

All pipelines are timed in the same run, on the same audio, interleaved where ratios are taken, so
that ratios stay valid on a noisy machine; the load average is recorded next to each section.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402  (needs benchmarks/ on sys.path)

SECTIONS = ("per_hop", "throughput", "analyze", "compare", "profile", "optim", "live", "mic", "startup", "memory")

# targets of the benchmark issue, on the 2-core reference machine
TARGETS = {
    "per_hop_p50_ms": 2.0,
    "per_hop_p99_ms": 5.0,
    "file_x_realtime": 1000.0,
    "seed_ratio": 20.0,
    "line_latency_p99_ms": 10.0,
    "listen_rss_mb": 150.0,
    "model_mb": 2.0,
    "analyze_growth_mb": 10.0,
}


LONG_SECONDS = 3600.0  # s: the long file of the memory check (full run)
QUICK_LONG_SECONDS = 20.0  # s: the same under --quick


def sizes(quick: bool, long_seconds: float | None = None) -> dict:
    """Repeat counts and audio lengths of a run; ``long_seconds`` (--long-seconds), when given,
    sets the memory check's long file under --quick too (else 3600 s, --quick 20 s)."""
    if long_seconds is None:
        long_seconds = QUICK_LONG_SECONDS if quick else LONG_SECONDS
    if quick:
        return dict(
            hop_repeats=20, tp_min_s=0.05, file_s=10.0, an_repeats=1, cmp_s=3.0, cmp_rounds=1, cmp_ours=1, cmp_hop=5,
            cmp_seed_hop=1, prof_b1=5, prof_b64=1, opt_repeats=10, opt_min_s=0.02, live_file_s=10.0, live_rt_s=2.0,
            live_rt16_s=1.0, mic_s=3.0, start_repeats=1, mem_short_s=5.0, mem_mid_s=10.0, mem_long_s=long_seconds,
        )
    return dict(
        hop_repeats=2000, tp_min_s=1.0, file_s=300.0, an_repeats=3, cmp_s=30.0, cmp_rounds=3, cmp_ours=10, cmp_hop=300,
        cmp_seed_hop=5, prof_b1=300, prof_b64=10, opt_repeats=1000, opt_min_s=0.5, live_file_s=300.0, live_rt_s=60.0,
        live_rt16_s=20.0, mic_s=30.0, start_repeats=5, mem_short_s=60.0, mem_mid_s=600.0, mem_long_s=long_seconds,
    )


def _get(d: dict, *path, default=None):
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def duration(seconds: float) -> str:
    """Audio length for a table header: 5 → "5 s", 600 → "10 min", 3600 → "1 h"."""
    seconds = float(seconds)
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    if seconds >= 60:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def mem_seconds(r: dict) -> dict:
    """{"short"|"mid"|"long": seconds} of the files the memory section measured (else the planned sizes)."""
    got = _get(r, "sections", "memory", "seconds")
    if isinstance(got, dict) and got:
        return got
    z = r.get("sizes", {})
    return {k: z[f"mem_{k}_s"] for k in ("short", "mid", "long") if f"mem_{k}_s" in z}


def why_not(r: dict, section: str) -> str:
    """Why a section has no numbers: its own skip reason, its error, or that it was not asked for."""
    sec = _get(r, "sections", section)
    if isinstance(sec, dict) and sec.get("skipped"):
        return str(sec["skipped"])
    err = _get(r, "errors", section)
    if err:
        return f"the {section} section failed: {str(err).splitlines()[0]}"
    if sec is None:
        return f"the {section} section was not run (--sections)"
    return ""


def check_targets(r: dict) -> dict:
    """Each target: measured value, limit, met (True/False/None when not measured; then ``why``)."""
    s = r.get("sections", {})
    out = {}

    def add(name: str, value, limit, *, higher_is_better: bool = False, note: str = "", section: str = "") -> None:
        met = None if value is None else (value >= limit if higher_is_better else value <= limit)
        out[name] = {"value": value, "limit": limit, "met": met, **({"note": note} if note else {})}
        if value is None and section and why_not(r, section):
            out[name]["why"] = why_not(r, section)

    hop = _get(s, "per_hop", "threads_1", default={})
    add("per_hop_p50_ms", hop.get("p50_ms"), TARGETS["per_hop_p50_ms"], note="Detector.predict, batch 1, ORT threads 1")
    add("per_hop_p99_ms", hop.get("p99_ms"), TARGETS["per_hop_p99_ms"], note="Detector.predict, batch 1, ORT threads 1")
    an = {k: v for k, v in (_get(s, "analyze", default={}) or {}).items() if isinstance(v, dict) and "x_realtime" in v}
    best = max(an.items(), key=lambda kv: kv[1]["x_realtime"]) if an else None
    add("file_x_realtime", best[1]["x_realtime"] if best else None, TARGETS["file_x_realtime"], higher_is_better=True,
        note=f"analyze_file → JSON Lines, 44.1 kHz FLAC, best config ({best[0]})" if best else "")
    an16 = {k: v for k, v in (_get(s, "analyze", "wav_model_rate", default={}) or {}).items() if isinstance(v, dict) and "x_realtime" in v}
    best16 = max(an16.items(), key=lambda kv: kv[1]["x_realtime"]) if an16 else None
    add("file_x_realtime_model_rate_wav", best16[1]["x_realtime"] if best16 else None, TARGETS["file_x_realtime"], higher_is_better=True,
        note=f"analyze_file → JSON Lines, WAV at the model's rate (no resampling), best config ({best16[0]})" if best16 else "")
    add("seed_ratio", _get(s, "compare", "file_ratio_seed_over_ours"), TARGETS["seed_ratio"], higher_is_better=True,
        note="file analysis, seed-style time / ours, median of interleaved rounds", section="compare")
    rt = _get(s, "live", "file_realtime_44k", "stages", "total", "p99_ms")
    mic = _get(s, "mic", "device_rate", "stages", "total", "p99_ms")
    add("line_latency_p99_ms", mic if mic is not None else rt, TARGETS["line_latency_p99_ms"],
        note=("virtual microphone at its own rate" if mic is not None else "file source paced like a device, 44.1 kHz")
        + ": last sample of the window delivered → JSON line written (the resampler has no look-ahead)")
    mic16 = _get(s, "mic", "capture_model_rate", "stages", "total", "p99_ms")
    rt16 = _get(s, "live", "file_realtime_model_rate", "stages", "total", "p99_ms")
    add("line_latency_p99_ms_at_model_rate", mic16 if mic16 is not None else rt16, TARGETS["line_latency_p99_ms"],
        note=("virtual microphone opened at the model's rate" if mic16 is not None else "file source paced like a device, at the model's rate")
        + ": no resampler in the loop")
    lst = _get(s, "memory", "listen", "long", "peak_rss_mb")
    add("listen_rss_mb", lst, TARGETS["listen_rss_mb"], note="listen --input <long file> --no-dashboard")
    torch_in = _get(s, "startup", "listen", "imports", "torch_imported")
    out["listen_torch_free"] = {"value": None if torch_in is None else not torch_in, "limit": True, "met": None if torch_in is None else not torch_in}
    mb = _get(r, "model", "bytes")
    add("model_mb", None if mb is None else round(mb / 1e6, 3), TARGETS["model_mb"])
    ms = {k: duration(v) for k, v in mem_seconds(r).items()}
    add("analyze_growth_mb", _get(s, "memory", "analyze", "growth_mb"), TARGETS["analyze_growth_mb"],
        note=f"peak RSS, {ms.get('long', '?')} file minus {ms.get('short', '?')} file", section="memory")
    add("analyze_growth_after_first_batch_mb", _get(s, "memory", "analyze", "growth_after_first_batch_mb"), TARGETS["analyze_growth_mb"],
        note=f"peak RSS, {ms.get('long', '?')} file minus {ms.get('mid', '?')} file"
        + (" (both fill 64-window batches)" if mem_seconds(r).get("mid", 0) >= 64 else ""), section="memory")
    return out


def markdown(r: dict) -> str:
    """The results table for benchmarks/README.md (and a shorter one for the main README)."""
    s = r.get("sections", {})
    m = r["machine"]
    lines = [
        f"Measured {m['date_utc']} on {m['cpu_model']}, {m['usable_cpus']} CPUs, ORT {m['versions'].get('onnxruntime')} "
        f"({', '.join(m['ort_available_providers'])}), commit {str(m['git_commit'])[:8]}{' (dirty)' if m['git_dirty'] else ''}, "
        f"model {r['model']['name']} ({r['model']['bytes'] / 1e6:.2f} MB); load average at start {m['loadavg_start']}, at end {m.get('loadavg_end')}."
        + (f" Running beside it: {'; '.join(m['busy_processes_start'])}." if m.get("busy_processes_start") else ""),
        "",
    ]
    c = s.get("compare")
    if c and "file" in c:
        f, h = c["file"], c["per_hop"]
        lines += [
            f"| pipeline (same audio, same run, {c.get('threads', '?')} thread each) | file analysis × real time | vs ours | per window, batch 1: p50 / p99 ms |",
            "|---|---:|---:|---:|",
            f"| **ours**: ONNX Runtime, nnAudio CQT + CNN in one graph | **{f['ours']['x_realtime']:,.0f}×** | 1× | "
            f"{h['ours_ort_threads1']['p50_ms']:.2f} / {h['ours_ort_threads1']['p99_ms']:.2f} |",
            f"| ours in torch eager (nnAudio layer, same CNN) | {f['torch_eager']['x_realtime']:,.0f}× | "
            f"{c['file_ratio_torch_over_ours']:g}× slower | {h['torch_eager']['p50_ms']:.2f} / {h['torch_eager']['p99_ms']:.2f} |",
            f"| seed-style: librosa CQT 44.1 kHz + 13.5 M CNN, torch eager | {f['seed_style']['x_realtime']:,.1f}× | "
            f"{c['file_ratio_seed_over_ours']:g}× slower | {h['seed_style']['p50_ms']:.1f} / {h['seed_style']['p99_ms']:.1f} |",
            "",
        ]
    elif "compare" in s or "compare" in r.get("errors", {}):
        lines += [f"Seed-style comparison (librosa CQT + 13.5 M CNN, torch): not measured — {why_not(r, 'compare')}.", ""]
    hop, tp, an = s.get("per_hop"), s.get("throughput"), s.get("analyze")
    if tp and an:
        w16 = an.get("wav_model_rate", {})
        lines += ["| ORT threads | batch | model only × real time | 44.1 kHz FLAC → JSON Lines × real time | WAV at the model's rate → JSON Lines |",
                  "|---:|---:|---:|---:|---:|"]
        for t in (1, 2):
            for b in (1, 8, 64):
                k = f"threads_{t}_batch_{b}"
                if k in tp and k in an:
                    wav = f"{w16[k]['x_realtime']:,.0f}×" if k in w16 else "–"
                    lines.append(f"| {t} | {b} | {tp[k]['x_realtime']:,.0f}× | {an[k]['x_realtime']:,.0f}× | {wav} |")
        lines.append("")
    if hop:
        lines += ["| per-hop inference (`Detector.predict`, 1 window) | p50 ms | p95 ms | p99 ms |", "|---|---:|---:|---:|"]
        for t in (1, 2):
            h = hop.get(f"threads_{t}")
            if h:
                lines.append(f"| ORT intra-op threads {t} ({hop.get('provider')}) | {h['p50_ms']:.3f} | {h['p95_ms']:.3f} | {h['p99_ms']:.3f} |")
        lines.append("")
    lv = s.get("live", {})
    for key, title in (("file_fast_44k", "file source, as fast as it goes, 44.1 kHz"), ("file_realtime_44k", "file source paced like a device, 44.1 kHz"),
                       ("file_realtime_model_rate", "file source paced like a device, at the model's rate (no resampler)")):
        d = lv.get(key)
        if d and "stages" in d:
            lines += [f"Live loop — {title}, hop {d['hop_seconds']:g} s, block {d['block_frames']} frames, {d['hops']} hops:", "",
                      "| stage | per | p50 ms | p95 ms | p99 ms |", "|---|---|---:|---:|---:|"]
            for st, v in d["stages"].items():
                per = "block" if st in ("capture", "queue", "resample", "ring_write") else "window"
                lines.append(f"| {st} | {per} | {v['p50_ms']:.3f} | {v['p95_ms']:.3f} | {v['p99_ms']:.3f} |")
            lines.append("")
    mic = s.get("mic")
    if mic and "skipped" in mic:
        lines += [f"Virtual microphone: skipped — {mic['skipped']}.", ""]
    elif mic:
        for key, how in (("device_rate", "opened at its own rate, our resampler in the loop"), ("capture_model_rate", "opened at the model's rate, PulseAudio resamples")):
            d = mic.get(key)
            if not d:
                continue
            if "stages" not in d:
                lines += [f"Virtual microphone ({how}): skipped — {d.get('skipped')}.", ""]
                continue
            lines += [f"Live loop — PulseAudio virtual microphone ({mic['mic']['rate']} Hz FIFO, {how}), hop {d['hop_seconds']:g} s, "
                      f"{d['hops']} hops, PortAudio input latency {d['device_latency_ms']} ms (not included below):", "",
                      "| stage | p50 ms | p95 ms | p99 ms |", "|---|---:|---:|---:|"]
            for st_name, v in d["stages"].items():
                lines.append(f"| {st_name} | {v['p50_ms']:.3f} | {v['p95_ms']:.3f} | {v['p99_ms']:.3f} |")
            lines.append("")
    st, mem = s.get("startup"), s.get("memory")
    if st or mem:
        durs = " / ".join(duration(v) for v in mem_seconds(r).values()) if mem else ""
        head = f"peak RSS MB: {durs} of audio" if mem else f"peak RSS MB (not measured: {why_not(r, 'memory')})"
        lines += [f"| command | first detection s (median) | {head} | torch imported |", "|---|---:|---:|---|"]
        for name in ("analyze", "listen"):
            fd = _get(st or {}, name, "first_detection_s_median")
            ti = _get(st or {}, name, "imports", "torch_imported")
            rss = " / ".join(str(_get(mem or {}, name, k, "peak_rss_mb", default="–")) for k in ("short", "mid", "long"))
            lines.append(f"| `neuroear {name}` | {fd if fd is not None else '–'} | {rss} | {'yes' if ti else 'no' if ti is not None else '–'} |")
        if mem:
            lines.append(f"\nFiles: {mem.get('short')}, {mem.get('mid')}, {mem.get('long')}; the example clip tiled.")
        lines.append("")
    gpu = m["cuda"]
    lines += [f"GPU: {gpu}. ONNX Runtime providers here: {', '.join(m['ort_available_providers'])}.", ""]
    t = r.get("targets", {})
    if t:
        lines += ["| target | measured | limit | met |", "|---|---:|---:|---|"]
        for k, v in t.items():
            met = {True: "yes", False: "**no**", None: "not measured"}[v["met"]] + (f" ({v['why']})" if v.get("why") else "")
            lines.append(f"| {k} | {v['value']} | {v['limit']} | {met} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="neuroear bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny repeat counts and short files: a smoke run of a few seconds per section")
    ap.add_argument("--out", metavar="FILE.json", help="result file (default benchmarks/results/<cpus>cpu-<date>.json; --quick: not written unless given)")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)} (default all)")
    ap.add_argument("--model", metavar="PATH", help="model file (default: $NEUROEAR_MODEL, then the shipped model)")
    ap.add_argument("--long-seconds", type=float, metavar="S",
                    help=f"length of the long file for the memory check (default {LONG_SECONDS:g}; --quick: {QUICK_LONG_SECONDS:g})")
    ap.add_argument("--no-mic", action="store_true", help="skip the virtual-microphone run even if one is running")
    ap.add_argument("--markdown", metavar="FILE.md", help="also write the markdown tables here")
    args = ap.parse_args(argv)

    wanted = [x.strip() for x in args.sections.split(",") if x.strip()]
    unknown = [x for x in wanted if x not in SECTIONS]
    if unknown:
        ap.error(f"unknown section(s) {unknown}; choose from {','.join(SECTIONS)}")
    if args.no_mic and "mic" in wanted:
        wanted.remove("mic")
    from neuroear.infer import find_model

    model = find_model(args.model)
    z = sizes(args.quick, args.long_seconds)
    t_start = time.perf_counter()
    result: dict = {
        "benchmark": "neuroear bench",
        "command": "python benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "quick": args.quick,
        "machine": common.machine_info(),
        "model": common.model_info(model),
        "sizes": z,
        "sections": {},
        "errors": {},
    }

    def log(msg: str) -> None:
        print(f"[bench {time.perf_counter() - t_start:6.1f}s] {msg}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="neuroear-bench-") as tmp:
        tmp = Path(tmp)
        # the audio everything is timed on: the bundled example, tiled
        f44 = common.write_audio(tmp / "bench-44k.flac", z["file_s"], rate=common.BENCH_RATE)
        cmp44 = common.write_audio(tmp / "compare-44k.flac", z["cmp_s"], rate=common.BENCH_RATE)
        from neuroear import audio, framing
        from neuroear.metadata import read_card

        fr = read_card(model).framing  # the model's own rate, window and context
        # audio already at the model's rate: the live loop runs no resampler on it
        f16 = common.write_audio(tmp / "bench-model-rate.flac", max(z["live_rt16_s"] + 1, 5.0), rate=fr.sample_rate)
        sig16 = audio.load(f44, sample_rate=fr.sample_rate)
        wins = framing.windows(sig16, window=fr.window, sample_rate=fr.sample_rate, context=fr.context)[1]

        def section(name: str, fn) -> None:
            if name not in wanted:
                return
            log(f"{name} …")
            t0 = time.perf_counter()
            la = common.loadavg()
            try:
                res = fn()
            except Exception as exc:  # one broken section must not lose the others
                result["errors"][name] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-1500:]}"
                log(f"{name} FAILED: {type(exc).__name__}: {exc}")
                return
            if isinstance(res, dict):
                res.setdefault("loadavg_before", la)
                res["section_seconds"] = round(time.perf_counter() - t0, 1)
            result["sections"][name] = res

        import bench_infer as bi

        section("per_hop", lambda: bi.per_hop(model, wins, repeats=z["hop_repeats"]))
        section("throughput", lambda: bi.throughput(model, wins, min_seconds=z["tp_min_s"]))
        def analyze_both() -> dict:
            # the realistic input (44.1 kHz FLAC: decode + resample) and the cheapest one (WAV at
            # the model's rate: neither), so the model's share and the input's share can be told apart
            res = bi.analyze_throughput(model, f44, seconds=z["file_s"], repeats=z["an_repeats"])
            w16 = common.write_audio(tmp / "bench-model-rate.wav", z["file_s"], rate=fr.sample_rate)
            res["wav_model_rate"] = bi.analyze_throughput(model, w16, seconds=z["file_s"], repeats=z["an_repeats"])
            w16.unlink()
            return res

        section("analyze", analyze_both)

        def compare() -> dict:
            try:
                import librosa  # noqa: F401
                import torch  # noqa: F401
                import nnAudio  # noqa: F401
            except ImportError as exc:
                return {"skipped": f"needs the 'bench' and 'train' extras ({exc.name} not installed: pip install -e '.[train,bench]')"}
            return bi.compare(model, cmp44, seconds=z["cmp_s"], rounds=z["cmp_rounds"], ours_repeats=z["cmp_ours"],
                              hop_repeats=z["cmp_hop"], seed_hop_repeats=z["cmp_seed_hop"])

        section("compare", compare)
        section("profile", lambda: {"ort": bi.ort_profile(model, wins, runs_b1=z["prof_b1"], runs_b64=z["prof_b64"]),
                                    "analyze_stages": bi.analyze_stages(model, f44, seconds=z["file_s"])})
        section("optim", lambda: bi.optim(model, wins, repeats=z["opt_repeats"], min_seconds=z["opt_min_s"]))

        import bench_live as bl

        def live() -> dict:
            return {
                "file_fast_44k": bl.file_fast(model, f44, hop_seconds=0.25),
                "file_realtime_44k": bl.file_realtime(model, f44, hop_seconds=0.25, seconds=z["live_rt_s"]),
                "file_realtime_model_rate": bl.file_realtime(model, f16, hop_seconds=0.25, seconds=z["live_rt16_s"]),
            }

        section("live", live)
        section("mic", lambda: bl.virtual_mic(model, hop_seconds=0.25, seconds=z["mic_s"], rates=(None, fr.sample_rate)))

        import bench_startup as bs

        from neuroear.live.sources import example_clip

        section("startup", lambda: bs.startup(model, example_clip(), repeats=z["start_repeats"]))

        def memory() -> dict:
            files = {}
            for key, secs in (("short", z["mem_short_s"]), ("mid", z["mem_mid_s"]), ("long", z["mem_long_s"])):
                t0 = time.perf_counter()
                files[key] = (common.write_audio(tmp / f"{key}-16k.flac", secs, rate=16_000), secs)
                log(f"  {key} file: {secs:g} s written in {time.perf_counter() - t0:.1f} s ({files[key][0].stat().st_size / 1e6:.0f} MB)")
            return bs.memory(model, files)

        section("memory", memory)

    result["machine"]["loadavg_end"] = common.loadavg()
    result["machine"]["busy_processes_end"] = common.busy_processes()
    result["total_seconds"] = round(time.perf_counter() - t_start, 1)
    result["targets"] = check_targets(result)
    md = markdown(result)
    out = args.out
    if out is None and not args.quick:
        day = result["machine"]["date_utc"][:10]
        out = str(HERE / "results" / f"{result['machine']['usable_cpus']}cpu-{day}.json")
    if out:
        common.write_json(Path(out), result)
        log(f"wrote {out}")
    if args.markdown:
        Path(args.markdown).write_text(md)
    print(md)
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
