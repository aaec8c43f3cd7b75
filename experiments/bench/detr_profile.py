"""Where the DETR-R50 CPU training step spends its time, on both sides, op by op.

    python experiments/bench/detr_profile.py [--backbone detr|frozen] [--steps 3]

Builds the same two steps as ``detr_step.py`` (2 x 256 x 256 fp32, the real criterion, the
same trained parameters on both sides), then:

- jaxvision: one ``jax.profiler`` trace of ``--steps`` steps; every XLA op of the trace is
  matched to its instruction in the compiled HLO and summed by kind (convolution, dot,
  transpose / copy, reduction, elementwise) and by pass: forward (``jvp``), backward
  (``transpose``) or outside the gradient (the optimizer, the clipping);
- HF: ``torch.profiler`` over the same number of steps, summed by ATen op (self CPU time);
- both: wall time, user and system CPU seconds and minor page faults per step
  (``getrusage``), which show how much of each step goes to first touches of freshly
  allocated memory.

Times are CPU milliseconds per step summed over threads (a 2-thread step can spend twice
its wall time).
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import detr_step  # noqa: E402


def per_step_usage(step, steps: int) -> str:
    """Wall, user, system seconds and minor page faults per call of ``step``."""
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(steps):
        step()
    r1, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - t0
    return (
        f"wall {wall / steps:.3f} s, user {(r1.ru_utime - r0.ru_utime) / steps:.3f} s, "
        f"system {(r1.ru_stime - r0.ru_stime) / steps:.3f} s, "
        f"minor page faults {(r1.ru_minflt - r0.ru_minflt) // steps}"
    )


def hlo_instructions(text: str) -> tuple[dict, dict]:
    """Instruction name -> (its text) and computation name -> its lines, from HLO text."""
    comps: dict[str, list[str]] = {}
    inst: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        if m := re.match(r"^(?:ENTRY )?%(\S+) .*\{$", line):
            current = m.group(1)
            comps[current] = []
        elif current and line.strip() == "}":
            current = None
        elif current:
            comps[current].append(line)
            if m := re.match(r"\s*(?:ROOT )?%(\S+) = (.*)$", line):
                inst[m.group(1)] = m.group(2)
    return inst, comps


def classify(body: str, name: str, comps: dict) -> tuple[str, str]:
    """(pass, kind) of one HLO instruction: its metadata names the autodiff pass, its fused
    computation the ops inside."""
    op_name = m.group(1) if (m := re.search(r'op_name="([^"]*)"', body)) else ""
    called = m.group(1) if (m := re.search(r"calls=%([\w.-]+)", body)) else None
    text = " " + body + " " + " ".join(comps.get(called, []))
    kind = next((op for op in ("convolution", "dot", "transpose") if f" {op}(" in text), None)
    if kind is None:
        kind = "copy" if name.startswith("copy") or " copy(" in text else None
        kind = kind or (
            "reduction" if " reduce(" in text or "reduce-window" in text else "elementwise"
        )
    stage = "backward" if "transpose(" in op_name else "forward" if "jvp(" in op_name else "outside"
    return stage, kind


def timeline(ops: list[dict], steps: int) -> str:
    """Per step: XLA ops run, the wall time with none running, and the longest such gaps
    (the one before each step's first op is the call's dispatch: flattening the state,
    checking its buffers, donating them where the step donates)."""
    ops = sorted(ops, key=lambda e: e["ts"])
    idle, gaps, end = 0.0, [], ops[0]["ts"]
    for e in ops:
        if e["ts"] > end:
            idle += e["ts"] - end
            gaps.append(e["ts"] - end)
        end = max(end, e["ts"] + e["dur"])
    longest = ", ".join(f"{g / 1e3:.1f}" for g in sorted(gaps)[-steps:])
    return (
        f"{len(ops) // steps} ops per step; no op running {idle / 1e3 / steps:.1f} ms per "
        f"step, of which the {steps} longest gaps (ms): {longest}"
    )


def profile_jax(side: dict, steps: int) -> None:
    inst, comps = hlo_instructions(side["compiled"].as_text())
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d, create_perfetto_trace=True):
            for _ in range(steps):
                side["step"]()
        trace = next(Path(d).rglob("perfetto_trace.json.gz"))
        events = json.load(gzip.open(trace))
    events = events["traceEvents"] if isinstance(events, dict) else events
    ops = [e for e in events if e.get("ph") == "X" and e["name"] in inst]
    total: collections.Counter = collections.Counter()
    top: dict = collections.defaultdict(collections.Counter)
    for e in ops:
        key = classify(inst[e["name"]], e["name"], comps)
        total[key] += e["dur"] / 1e3 / steps
        top[key][re.sub(r"\.\d+$", "", e["name"])] += e["dur"] / 1e3 / steps
    print(f"jaxvision, XLA ops: {sum(total.values()):.0f} CPU ms per step")
    print("  " + timeline(ops, steps))
    for (stage, kind), ms in total.most_common():
        names = ", ".join(f"{n} {t:.0f}" for n, t in top[stage, kind].most_common(2))
        print(f"  {stage:9s} {kind:12s} {ms:7.1f} ms   ({names})")


def profile_torch(side: dict, steps: int) -> None:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            side["step"]()
    rows = sorted(prof.key_averages(), key=lambda r: -r.self_cpu_time_total)
    total = sum(r.self_cpu_time_total for r in rows) / 1e3 / steps
    print(f"HF, ATen ops: {total:.0f} CPU ms per step (self time)")
    for r in rows[:14]:
        ms = r.self_cpu_time_total / 1e3 / steps
        print(f"  {r.key[:44]:44s} {ms:7.1f} ms, {r.count // steps} calls")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", choices=["detr", "frozen"], default="detr")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    args.preset = "cpu"
    hf_model, hf_state, hf_config = detr_step.build_hf("cpu")
    batch = detr_step.make_batch(np.random.default_rng(0), 2, 256, 256, hf_config["num_queries"])
    ours = detr_step.jax_side(hf_state, hf_config, batch, "fp32", "real", args)
    peer = detr_step.torch_side(hf_model, batch, "fp32", "real", args)
    counts = f"jaxvision {ours['trained'] / 1e6:.2f} M, HF {peer['trained'] / 1e6:.2f} M"
    print(f"trained parameters: {counts}")
    for name, side in (("jaxvision", ours), ("HF", peer)):
        side["step"]()
        side["step"]()
        print(f"{name} per step: {per_step_usage(side['step'], args.steps)}")
    profile_jax(ours, args.steps)
    profile_torch(peer, args.steps)


if __name__ == "__main__":
    main()
