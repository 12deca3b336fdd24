"""results.json -> BENCHMARKS.md, with the hand-kept measurements, attempts log and GPU rows embedded."""

from __future__ import annotations

import json
import os
import statistics

from benchmarks.stats import fmt, summary

HERE = os.path.dirname(os.path.abspath(__file__))
COMMAND = "python -m benchmarks.run"


def _ratios(rounds: dict, a: str, b: str) -> dict:
    return summary([x / y for x, y in zip(rounds[a], rounds[b], strict=True)])


def _machine(m: dict) -> str:
    v = m["versions"]
    load = ", ".join(f"{x:.1f}" for x in m["load_average"])
    bf16 = ", ".join(m["bf16_instructions"]) or "none (no avx512_bf16/amx_bf16)"
    native = m.get("bf16_native")
    if native:
        bf16 += (f"; native bfloat16 for TensorFlow: {'yes' if native['native'] else 'NO'} "
                 f"({native['reason']})")
    return (f"- CPU: {m['cpu']}, {m['cores']} cores; bfloat16 instructions: {bf16}\n"
            f"- Versions: Python {v['python']}, TensorFlow {v['tensorflow']}, Keras {v['keras']}, "
            f"tensorflow-datasets {v['tensorflow-datasets']}, NumPy {v['numpy']}, "
            f"PyTorch {v.get('torch', '-')}\n"
            f"- Load average (1/5/15 min) at {m['utc']} UTC: {load}")


def _precision(r: dict, name: str) -> str:
    return r.get("training_precision", {}).get(name, "float32")  # older results: all float32


def _auto_row(r: dict, names) -> str:
    """The Keras row `--precision auto` trains as on the measured machine."""
    policy = r["auto"]["policy"]
    return next(n for n in names if n.startswith("Keras fit, product settings")
                and _precision(r, n) == policy and not n.endswith(("tuned", "transfer")))


def training_section(r: dict) -> list:
    names = list(r["training"])
    keras_ref = names[0]
    eager = next(n for n in names if n.endswith("eager"))
    compiled = next(n for n in names if n.endswith("torch.compile"))
    peers = [n for n in names if n.startswith("PyTorch") and not n.endswith("TensorFlow process")]
    fastest = max(peers, key=lambda n: r["training"][n]["median"])
    lines = ["## Training throughput, vanilla LeNet-5, batch 64 (images/s)", "",
             "| contender | precision | images/s median (min–max) | / PyTorch eager | "
             "/ torch.compile | / fastest PyTorch |",
             "|---|---|---|---|---|---|"]
    for name in names:
        if name.endswith(("tuned", "transfer")):
            continue
        lines.append(f"| {name} | {_precision(r, name)} | {fmt(r['training'][name])} | "
                     f"{fmt(_ratios(r['rounds'], name, eager), 2)} | "
                     f"{fmt(_ratios(r['rounds'], name, compiled), 2)} | "
                     f"{fmt(_ratios(r['rounds'], name, fastest), 2)} |")
    ref = _ratios(r["rounds"], keras_ref, eager)["median"]
    refc = _ratios(r["rounds"], keras_ref, compiled)["median"]
    lines += ["", f"Targets: product Keras >= 1.5x PyTorch eager ({ref:.2f}x: "
              f"{'met' if ref >= 1.5 else 'NOT met'}) and > torch.compile ({refc:.2f}x: "
              f"{'met' if refc > 1 else 'NOT met'}). Ratios are the median (min–max) of per-round "
              "ratios: each round runs every contender back to back. The fastest PyTorch setting "
              f"here is {fastest} ({_precision(r, fastest)})."]
    if "auto" in r:
        auto = r["auto"]
        row = _auto_row(r, names)
        ratio = _ratios(r["rounds"], row, fastest)["median"]
        native = auto["policy"] != "float32"
        verdict = (("met" if ratio >= 1.2 else "NOT met") if native else
                   "not applicable: no native bfloat16 here, so auto is float32, the product row")
        lines += ["", f"`--precision auto` trains as {auto['policy']} here, because {auto['reason']}. "
                  f"Target on a CPU with native bfloat16: auto >= 1.2x the fastest PyTorch setting "
                  f"({ratio:.2f}x: {verdict})."]
    if any(name.endswith("TensorFlow process") for name in names):
        lines += ["", "The PyTorch peers run in processes of their own that never import TensorFlow, as "
                  "a PyTorch user runs them. The row 'in the benchmark's TensorFlow process' is the "
                  "same eager peer inside this process, where it runs without the ~700 minor page faults "
                  "per step it takes alone (benchmarks/ATTEMPTS.md, row 25)."]
    return lines


def bound_section(r: dict) -> list:
    gflops = r["matmul_gflops"]
    lines = ["## Against the compute bound", "",
             f"float32 matmul rate (TensorFlow, 1024x1024): {fmt(gflops, 1)} GFLOP/s.", "",
             "| experiment | training FLOPs/image | bound images/s | achieved images/s | fraction of bound |",
             "|---|---|---|---|---|"]
    for name, flops in r["flops"].items():
        achieved = r["training"][r["bound_names"][name]]
        bound = gflops["median"] * 1e9 / flops
        lines.append(f"| {name} | {flops / 1e6:.2f} M | {bound:,.0f} | {fmt(achieved)} | "
                     f"{achieved['median'] / bound:.1%} |")
    lines += ["", "FLOPs: forward multiply-adds x2, x3 for trained layers (transfer trains only its "
              "head); see benchmarks/flops.py."]
    return lines


def pipeline_section(r: dict) -> list:
    lines = ["## Input pipeline alone (images/s)", "",
             "| pipeline | first pass: read + decode (+ resize) + cache | later epochs: from cache | "
             "later epochs / training throughput |", "|---|---|---|---|"]
    for name, p in r["pipeline"].items():
        train = r["training"][r["bound_names"][name]]["median"]
        lines.append(f"| {name} ({r['train_examples'][name]:,} images) | {fmt(p['cold'])} | "
                     f"{fmt(p['warm'])} | {p['warm']['median'] / train:.1f}x |")
    lines += ["", "Each pass is consumed as `fit` consumes it: a new iterator drained by a traced "
              "loop of `next` calls; later epochs are the median of three passes. The first pass "
              "happens once per run (then `cache()` serves every epoch); STL-10's 96->32 resize "
              "happens only in it."]
    return lines


def study_section(r: dict) -> list:
    if not r["study"]:
        return ["## `train --exp all`", "", "Not run (--study_runs 0)."]
    by_policy = {}
    for run in r["study"]:  # older results have float32 runs only, unlabelled
        by_policy.setdefault(run.get("precision", "float32"), []).append(run)
    walls = summary([s["wall"] for s in by_policy["float32"]])
    lines = ["## `python -m lenet_keras.train --exp all --precision P`, full-sized synthetic data", "",
             f"float32 wall time over {len(by_policy['float32'])} run(s): {fmt(walls, 1)} s "
             f"(target < 150 s: {'met' if walls['median'] < 150 else 'NOT met'})."]
    for policy, runs in by_policy.items():
        if policy != "float32":
            lines.append(f"{policy}: {fmt(summary([s['wall'] for s in runs]), 1)} s.")
    lines += ["", "| experiment | precision | training-epoch seconds, median (min–max) | "
              "test accuracy (median) | vs float32 (points) |", "|---|---|---|---|---|"]
    accuracy = {}
    for name in r["study"][0]["experiments"]:
        for policy, runs in by_policy.items():
            secs = summary([s["experiments"][name]["epoch_seconds"] for s in runs])
            acc = statistics.median(s["experiments"][name]["test_accuracy"] for s in runs)
            accuracy[name, policy] = acc
            delta = 100 * (acc - accuracy[name, "float32"])
            lines.append(f"| {name} | {policy} | {fmt(secs, 1)} | {acc:.4f} | {delta:+.2f} |")
    auto = r.get("auto", {}).get("policy")
    if auto and auto != "float32" and auto in by_policy:
        # The goal bounds what auto may cost: a drop; a gain shows in the table's signed column.
        drop = max(accuracy[name, "float32"] - accuracy[name, auto]
                   for name in r["study"][0]["experiments"])
        lines += ["", f"Target: auto ({auto} here) at most 1.5 points below float32's test accuracy "
                  f"in every experiment (largest drop {100 * max(drop, 0):.2f} points: "
                  f"{'met' if drop <= 0.015 else 'NOT met'}). Runs under different policies "
                  "compute different numbers; none is comparable bit for bit with another."]
    return lines


def gpu_section() -> list:
    path = os.path.join(HERE, "gpu_results.json")
    if not os.path.exists(path):
        return ["## GPU", "", "No GPU results (benchmarks/gpu_results.json absent)."]
    with open(path) as f:
        g = json.load(f)
    rates = g["training_images_per_s"]
    eager = next(n for n in rates if n.endswith("eager"))
    lines = ["## GPU (one run of `python -m benchmarks.gpu`, committed as gpu_results.json)", "",
             f"{g['device']}, host with {g['cpu_count']} CPU cores; no TensorFlow there, so Keras runs "
             f"on its JAX backend; {g['images_per_run']:,} in-memory images per run.", "",
             "| contender | images/s median (min–max) | / PyTorch eager |", "|---|---|---|"]
    for name, s in rates.items():
        lines.append(f"| {name} | {fmt(s)} | {s['median'] / rates[eager]['median']:.2f} |")
    bound = g["matmul_fp32_gflops"]["median"] * 1e9 / g["training_flops_per_image"]
    best = max(s["median"] for s in rates.values())
    lines += ["", f"float32 matmul (8192^3, TF32 off): {fmt(g['matmul_fp32_gflops'])} GFLOP/s; bound "
              f"{bound:,.0f} images/s; the best contender reaches {best / bound:.2%} of it: at batch 64 "
              "a GPU is launch-bound for LeNet-5."]
    return lines


def render(r: dict) -> str:
    f = r["flags"]
    head = ["# Benchmarks", "",
            f"Written by `{COMMAND}` (repeats={f['repeats']}, train_images={f['train_images'] or 'all'}, "
            f"study_runs={f['study_runs']}, torch_threads={f.get('torch_threads', 0)}, "
            f"precisions={','.join(f.get('precisions', ['float32']))}). "
            "Figures: median (min–max) of the repeated runs.", "",
            "## Machine", "", _machine(r["machine_before"]),
            f"- PyTorch threads used: {r['machine_after']['versions'].get('torch_threads', '-')}",
            "- Load average when finished: "
            + ", ".join(f"{x:.1f}" for x in r["machine_after"]["load_average"]),
            ""]
    body = []
    for section in (training_section(r), bound_section(r), pipeline_section(r), study_section(r),
                    gpu_section()):
        body += section + [""]
    for hand_kept in ("MEASUREMENTS.md", "ATTEMPTS.md"):
        path = os.path.join(HERE, hand_kept)
        if os.path.exists(path):
            with open(path) as fh:
                body.append(fh.read())
    return "\n".join(head + body)
