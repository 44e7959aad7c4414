"""Run every benchmark (each in its own process) and print one table of ratios against targets.

    python bench/run_all.py --quick                      # CI size: at most 15 minutes on 2 CPU cores
    python bench/run_all.py --quick --markdown bench.md  # also write the table as Markdown
    python bench/run_all.py --tiny --only load search    # a subset, seconds each

Each benchmark prints, as its last line, ``{"bench", "ratio", "target", "better", ...}``; this
script reads only that line. The ``gpu`` check runs only where ``nvidia-smi`` sees a GPU and is
marked skipped elsewhere.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import met  # noqa: E402  (after the path tweak)

BENCHES = ("simulate", "load", "overhead", "launch", "scale", "search", "strategies", "separability", "gpu")
TIMEOUT_S = {"tiny": 300, "quick": 600, "full": 3600}


def has_gpu() -> bool:
    """A CUDA GPU visible to nvidia-smi (cheap: no torch import)."""
    if not shutil.which("nvidia-smi"):
        return False
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return out.returncode == 0 and "GPU" in out.stdout


def command(name: str, size: str) -> list[str]:
    if name == "gpu":
        return ["bash", str(HERE / "gpu_check.sh")] + ([f"--{size}"] if size != "full" else [])
    return [sys.executable, str(HERE / f"{name}.py")] + ([f"--{size}"] if size != "full" else [])


def run_one(name: str, size: str, log_dir: Path | None) -> dict:
    """Run one benchmark; its result line plus ``seconds`` (or an ``error`` / ``skipped`` row)."""
    if name == "gpu" and not has_gpu():
        return {"bench": name, "ratio": None, "target": None, "better": "higher", "skipped": "no GPU"}
    start = time.perf_counter()
    try:
        proc = subprocess.run(command(name, size), capture_output=True, text=True,
                              timeout=TIMEOUT_S[size], cwd=HERE.parent)
        stdout, stderr, code = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as err:
        stdout = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
        stderr, code = f"timed out after {TIMEOUT_S[size]} s", -1
    seconds = time.perf_counter() - start
    if log_dir is not None:
        (log_dir / f"{name}.log").write_text(stdout + "\n--- stderr ---\n" + stderr)
    lines = [ln for ln in stdout.strip().splitlines() if ln.strip()]
    try:
        row = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        row = None
    if code != 0 or not isinstance(row, dict) or "ratio" not in row:
        tail = (stderr.strip().splitlines() or ["no output"])[-1]
        row = {"bench": name, "ratio": None, "target": None, "better": "higher",
               "error": f"exit {code}: {tail[:200]}"}
    row["seconds"] = round(seconds, 1)
    return row


# ---------------------------------------------------------------- the table

def key_details(row: dict) -> str:
    """The few numbers behind a ratio, per benchmark."""
    if row.get("skipped"):
        return f"skipped: {row['skipped']}"
    if row.get("error"):
        return f"error: {row['error']}"
    f = {
        "simulate": lambda r: (f"project {r['project_img_s']} img/s vs lenstronomy {r['lenstronomy_img_s']} "
                               f"(model reused {r['lenstronomy_reused_img_s']}); per class "
                               + ", ".join(f"{c} {v['ratio']}x" for c, v in r["per_class"].items())
                               + "".join(f", {c} {v['ratio']}x (rendering alone {v['ratio_rendering']}x)"
                                         for c, v in r.get("pyhalo_classes", {}).items())),
        "separability": lambda r: (f"{r['n']} images, {r['preset']} swin_cls per-class test AUROC "
                                   + ", ".join(f"{c} {v}" for c, v in r["swin_per_class_auroc"].items())),
        "load": lambda r: (f"parquet {r['store_img_s']} vs np.load {r['npy_img_s']} img/s; machine ceiling "
                           f"(raw readinto) {r['ceiling_ratio']}x; peak memory "
                           f"{r['peak_memory_ratio']}x raw (target <= {r['peak_memory_target']}, "
                           f"{'met' if r['peak_memory_met'] else 'missed'}; np.load {r['peak_memory_npy_ratio']}x)"),
        "overhead": lambda r: (f"trial {r['trial_img_s']} vs bare {r['bare_img_s']} img/s; loop without Ray "
                               f"{r['ratio_loop_without_ray']}x; {r['space']} small, batch {r['batch_size']}"),
        "launch": lambda r: (f"reuse_actors={r['better_reuse_actors']} better; share without/with reuse "
                             f"{r['reuse_false']['share']}/{r['reuse_true']['share']}; wall "
                             f"{r['reuse_false']['wall_s']}/{r['reuse_true']['wall_s']} s; 10x longer trials "
                             f"({r['longer_trials']['training_per_trial_s']} s each): {r['longer_trials']['share']}"
                             if "longer_trials" in r else
                             f"reuse_actors={r['better_reuse_actors']} better; share without/with reuse "
                             f"{r['reuse_false']['share']}/{r['reuse_true']['share']}"),
        "scale": lambda r: (f"{r['trials']} trials of {r['trial_s']} s, {r['concurrency']} at once: tool "
                            f"{r['tool']['wall_s']} s, Ray alone {r['ray']['wall_s']} s, "
                            f"minimum {r['ray']['minimum_s']} s; "
                            f"TPE {r['samplers']['tpe_s']} s per proposal by trials"),
        "search": lambda r: (f"time vs Optuna alone {r['time_ratio_vs_optuna']}x (target >= {r['time_target']}); "
                             f"{r['trials']} trials x {r['max_epochs']} epochs, {r['seeds']} seeds"),
        "gpu": lambda r: r.get("summary", ""),
    }.get(row["bench"])
    try:
        return f(row) if f else ""
    except (KeyError, TypeError):
        return ""


def verdict(row: dict) -> str:
    if row.get("skipped"):
        return "skipped"
    if row.get("error"):
        return "error"
    ok = met(row)
    return "n/a" if ok is None else ("yes" if ok else "no")


def table_rows(rows: list[dict]) -> list[list[str]]:
    out = []
    for r in rows:
        op = ">=" if r.get("better") == "higher" else "<="
        target = "" if r.get("target") is None else f"{op} {r['target']:g}"
        ratio = "" if r.get("ratio") is None else f"{r['ratio']:.3g}"
        out.append([r["bench"], ratio, target, verdict(r), f"{r.get('seconds', 0):.0f}", key_details(r)])
    return out


HEADER = ["bench", "ratio", "target", "met?", "s", "key details"]


def text_table(rows: list[dict]) -> str:
    body = table_rows(rows)
    widths = [max(len(x[i]) for x in [HEADER, *body]) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5] for r in [HEADER, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * 11)
    return "\n".join(lines)


def markdown_table(rows: list[dict], size: str, total_s: float) -> str:
    body = table_rows(rows)
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in body]
    cpu = os.cpu_count()
    loads = [r["machine"]["loadavg_1m"] for r in rows if r.get("machine", {}).get("loadavg_1m") is not None]
    load = f" (1-minute load average {min(loads):g}-{max(loads):g} at the ends of the runs)" if loads else ""
    lines.append("")
    lines.append(f"`python bench/run_all.py --{size}` on {cpu} CPU cores{load}"
                 + (" with a GPU" if has_gpu() else ", no GPU") + f"; {total_s / 60:.1f} minutes in all. "
                 "Ratios are ours over the alternative users would use (see each script's docstring).")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--tiny", action="store_true", help="seconds per benchmark (smoke)")
    group.add_argument("--quick", action="store_true", help="CI size, at most 15 minutes in all")
    parser.add_argument("--only", nargs="+", choices=BENCHES, help="run only these")
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown to this file")
    parser.add_argument("--json", type=Path, help="also write every result line to this file")
    parser.add_argument("--logs", type=Path, help="keep each benchmark's full output in this directory")
    args = parser.parse_args()
    size = "tiny" if args.tiny else "quick" if args.quick else "full"
    if args.logs:
        args.logs.mkdir(parents=True, exist_ok=True)
    rows, start = [], time.perf_counter()
    for name in args.only or BENCHES:
        print(f"running {name} ({size}) ...", flush=True)
        rows.append(run_one(name, size, args.logs))
        print(f"  {verdict(rows[-1])}: ratio {rows[-1].get('ratio')} in {rows[-1].get('seconds')} s", flush=True)
    total = time.perf_counter() - start
    print()
    print(text_table(rows))
    print(f"\n{total / 60:.1f} minutes in all")
    if args.markdown:
        args.markdown.write_text(markdown_table(rows, size, total))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 1 if any(r.get("error") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
