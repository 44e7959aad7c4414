"""Helpers of ``gpu_check.sh``: bf16 training throughput with 1, 2 and 4 trials per GPU, and the summary.

``throughput``: K processes share the GPU (as K trials packed with ``--gpus-per-trial 1/K`` do);
each trains every registered backbone family (its classification space's default config of the given size)
on random 64x64 batches already on the device, in bf16 autocast with AdamW, for a fixed time after
a warm-up, all processes starting each backbone together. Data loading is not in these figures
(the search figures include it). Prints one JSON object: images/s per process and in aggregate.

``summarize``: reads the two searches' trial directories (``metrics.jsonl`` written by the loop)
and the throughput JSONs, prints the benchmark's JSON line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import time
from pathlib import Path


def backbone_spaces() -> dict[str, str]:
    """Each registered backbone family and the classification space that trains it (read from the registries)."""
    from search_spaces import compared_spaces, default_config

    return {default_config(name, "tiny", 64)["arch"]: name for name in compared_spaces("classification")}


def _worker(rank: int, size: str, seconds: float, device: str, barrier, queue) -> None:
    import torch
    import torch.nn.functional as F

    from search_spaces import default_config
    from trainables.models import build_backbone

    torch.manual_seed(rank)
    out = {}
    for arch, space in backbone_spaces().items():
        config = default_config(space, size=size, image_size=64)
        model = build_backbone(config, 64, num_outputs=3).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        bs = int(config["batch_size"])
        x = torch.randn(bs, 1, 64, 64, device=device)
        y = torch.randint(0, 3, (bs,), device=device)
        amp = torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16)

        def step(model=model, opt=opt, x=x, y=y, amp=amp) -> None:  # bound now: the loop rebinds them
            with amp:
                loss = F.cross_entropy(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        for _ in range(5):
            step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        barrier.wait()
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            step()
            steps += 1
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        out[arch] = steps * bs / (time.perf_counter() - start)
        barrier.wait()
        del model, opt
    queue.put(out)


def throughput(args: argparse.Namespace) -> None:
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(args.trials), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(r, args.size, args.seconds, args.device, barrier, queue))
             for r in range(args.trials)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=900) for _ in procs]
    for p in procs:
        p.join()
    report = {"trials_per_gpu": args.trials, "per_trial_img_s": {
        a: statistics.mean(r[a] for r in results) for a in backbone_spaces()},
        "aggregate_img_s": {a: sum(r[a] for r in results) for a in backbone_spaces()}}
    print(json.dumps(report), flush=True)


def _search_figures(run_dir: Path, wall_s: float, trials: int) -> dict:
    """Images/s per trial (median over reported epochs 2..E, else all) and trials per hour."""
    rates = []
    for path in run_dir.glob("*/metrics.jsonl"):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        per_epoch = [r["train_images_per_sec"] for r in rows if "train_images_per_sec" in r]
        if per_epoch:
            rates.append(statistics.median(per_epoch[1:] or per_epoch))
    return {"wall_s": round(wall_s, 1), "trials": trials, "trials_seen": len(rates),
            "trials_per_hour": round(trials / wall_s * 3600, 1) if wall_s > 0 else None,
            "per_trial_img_s": round(statistics.median(rates), 1) if rates else None,
            "sum_trial_img_s": round(sum(rates), 1) if rates else None}


def summarize(args: argparse.Namespace) -> None:
    one = _search_figures(Path(args.one_dir), args.one_wall, args.trials)
    packed = _search_figures(Path(args.packed_dir), args.packed_wall, args.trials)
    tput = [json.loads(Path(p).read_text().strip().splitlines()[-1]) for p in args.throughput]
    ratio = (packed["trials_per_hour"] / one["trials_per_hour"]
             if one["trials_per_hour"] and packed["trials_per_hour"] else None)
    summary = (f"swin_cls search: {one['trials_per_hour']} trials/h at 1 GPU/trial, "
               f"{packed['trials_per_hour']} packed 4/GPU; bf16 img/s per trial "
               + ", ".join(f"{a} {tput[0]['per_trial_img_s'][a]:.0f}" for a in backbone_spaces()) if tput else "")
    print(json.dumps({"bench": "gpu", "ratio": round(ratio, 3) if ratio else None, "target": 1.0,
                      "better": "higher", "summary": summary, "device": args.device_name,
                      "search_1_gpu_per_trial": one, "search_4_per_gpu": packed,
                      "bf16_throughput": tput,
                      "counts": "ratio = trials/hour packed 4 per GPU / trials/hour at 1 GPU per trial "
                                "(same 4-trial, 2-epoch swin_cls search); per-trial img/s from the loop's "
                                "train_images_per_sec"}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--trials", type=int, default=1)
    t.add_argument("--seconds", type=float, default=8.0)
    t.add_argument("--size", default="full")
    t.add_argument("--device", default="cuda")
    s = sub.add_parser("summarize")
    for name in ("one_dir", "packed_dir"):
        s.add_argument(f"--{name.replace('_', '-')}", required=True)
    s.add_argument("--one-wall", type=float, required=True)
    s.add_argument("--packed-wall", type=float, required=True)
    s.add_argument("--trials", type=int, required=True)
    s.add_argument("--throughput", nargs="*", default=[])
    s.add_argument("--device-name", default="")
    args = parser.parse_args()
    throughput(args) if args.cmd == "throughput" else summarize(args)


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
