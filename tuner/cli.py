"""Command line: ``python -m tuner {search,compare,campaign,baseline,train,evaluate,best,report,spaces,data}``.

The parser is built from the standard library only. Every command imports its heavy machinery
(torch, timm, ray, caustics) inside its handler, so ``--help`` and ``spaces`` stay fast. A command
turns its flags into a call of the Python API (:mod:`tuner.api`) and prints what it returns.
"""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Callable, Sequence

from lensdata.errors import DataError
from lensdata.instruments import INSTRUMENT_NAMES
from lensdata.names import CLASSES
from search_spaces.errors import SpaceError
from tuner.errors import Interrupted, TunerError

USER_ERRORS = (TunerError, DataError, SpaceError)  # printed as one line, exit status 2


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    from lensdata import substructure  # the dark-matter classes, their extras and ranges: no heavy import

    data = sub.add_parser("data", help="make, import and inspect lensing datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="{simulate,import,info}")

    sim = data_sub.add_parser("simulate", help="simulate a DeepLense-like dataset")
    sim.add_argument("--instrument", choices=INSTRUMENT_NAMES, default="model2", metavar="PRESET",
                     help="model1|model2|model3: the DeepLense sets as DeepLenseSim made them; "
                          "model1-physical|model2-physical|model3-physical: corrected distances and "
                          "instrument noise (docs/data.md)")
    sim.add_argument("--n", type=int, required=True, help="number of images, balanced over the classes")
    needs: dict[str, list[str]] = {}
    for cls in substructure.classes():
        if cls.extra:
            needs.setdefault(cls.extra.name, []).append(cls.name)
    extras = "".join(f"; {' and '.join(names)} need the {extra} extra" for extra, names in needs.items())
    sim.add_argument("--classes", default=",".join(CLASSES),
                     help=f"comma-separated classes to simulate, any of {','.join(substructure.names())}, e.g. "
                          f"axion for a regression set (default {','.join(CLASSES)}{extras}, docs/models/)")
    for r in substructure.parameter_ranges():
        sim.add_argument(r.flag, dest=r.key, default=None, metavar="LOW,HIGH", help=r.describe())
    sim.add_argument("--seed", type=int, default=0, help="same seed, same images, bit for bit")
    sim.add_argument("--out", required=True, help="output dataset directory")
    sim.add_argument("--overwrite", action="store_true", help="replace a dataset already at --out")
    sim.add_argument("--workers", type=int, default=1, help="processes (or Ray tasks with --address)")
    sim.add_argument("--batch-size", type=int, default=256, help="images simulated per batch")
    sim.add_argument("--address", default=None, help="Ray cluster to spread chunks over")
    sim.add_argument("--no-progress", action="store_true", help="no progress bar")
    sim.set_defaults(handler=_cmd_simulate)

    imp = data_sub.add_parser("import", help="import DeepLense .npy folders safely")
    imp.add_argument("src", help="folder holding Model_II/ (and Model_II_test/), or no/sphere/vort folders")
    imp.add_argument("--out", required=True, help="output dataset directory")
    imp.add_argument("--seed", type=int, default=0, help="seed of the train/val split")
    imp.add_argument("--overwrite", action="store_true", help="replace a dataset already at --out")
    imp.set_defaults(handler=_cmd_import)

    info = data_sub.add_parser("info", help="counts, shapes and value ranges of a dataset")
    info.add_argument("path", help="dataset directory or sim:INSTRUMENT[:N]")
    info.add_argument("--verify", choices=("fast", "full"), default="fast",
                      help="fast: sizes, footers and counts; full: also every file's sha256 (reads every byte)")
    info.set_defaults(handler=_cmd_info)


def _add_train_commands(sub: argparse._SubParsersAction) -> None:
    spaces = sub.add_parser("spaces", help="list the search spaces")
    spaces.set_defaults(handler=_cmd_spaces)

    train = sub.add_parser("train", help="train one configuration without Ray")
    train.add_argument("--space", default=None, help="search space name, e.g. swin_cls")
    train.add_argument("--params", default=None,
                       help="a JSON object such as '{\"lr\": 0.001}', or a JSON file such as best.json "
                            "(a value starting with { is JSON, anything else a path)")
    train.add_argument("--from", dest="from_run", default=None,
                       help="retrain the best configuration of a search run on train+val, test once")
    train.add_argument("--pick", default=None, metavar="N|best|fastest",
                       help="with --from: retrain member N of the run's Pareto front as `best` lists it, "
                            "best (member 1) or fastest (lowest latency_ms); written to RUN/final-TRIAL")
    train.add_argument("--data", default="sim:model2", help="dataset directory or sim:INSTRUMENT[:N]")
    train.add_argument("--epochs", type=int, default=None, help="epochs, at least 1 (default: the space's)")
    train.add_argument("--out", default=None,
                       help="output directory (default: train-SPACE-DATE under $DEEPLENSE_TUNER_RUNS or ./runs)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--size", choices=("tiny", "small", "full"), default=None,
                       help="model size knob of the space (default: small on CPU, full on GPU)")
    train.add_argument("--smoke-test", action="store_true", help="tiny model and data: seconds")
    train.add_argument("--init-from", default=None, metavar="MODEL_DIR",
                       help="start from the backbone of a trained model of the same family and image side "
                            "(its head is not copied), e.g. a regressor from a classifier")
    train.set_defaults(handler=_cmd_train)

    ev = sub.add_parser("evaluate", help="evaluate a trained model directory")
    ev.add_argument("model_dir", help="directory holding model.safetensors and config.json")
    ev.add_argument("--data", default=None,
                    help="dataset (default: the one it was trained on); metrics on other data are written "
                         "to SPLIT_metrics.DATA.json")
    ev.add_argument("--split", default="test", choices=("train", "val", "test"))
    ev.set_defaults(handler=_cmd_evaluate)


def _add_search_commands(sub: argparse._SubParsersAction) -> None:
    from tuner.trackers import TRACKERS  # names and help only: no tracker is imported

    s = sub.add_parser("search", help="tune a search space with Optuna TPE + ASHA on Ray Tune")
    s.add_argument("--space", required=True, help="search space name; see `python -m tuner spaces`")
    s.add_argument("--data", default=None, help="dataset directory or sim:INSTRUMENT[:N]")
    s.add_argument("--objective", default=None, metavar="METRIC[,COST...]",
                   help="what to optimise: the space's metric (default), or it and model cost measures "
                        "(params, flops, latency_ms), e.g. val_auroc,latency_ms: a multi-objective search whose "
                        "result is a Pareto front; ASHA's early stopping judges the task metric only")
    s.add_argument("--preset", choices=("smoke", "quick", "long", "full"), default=None,
                   help="smoke (CI), quick (~10 min on a 2-core laptop), long (~1 h on one), full (GPUs); "
                        "default: quick without a GPU, full with one")
    s.add_argument("--smoke-test", action="store_true", help="same as --preset smoke")
    s.add_argument("--num-samples", type=int, default=None, help="trials")
    s.add_argument("--max-epochs", type=int, default=None, help="epochs of a trial that is never stopped")
    s.add_argument("--final-epochs", type=int, default=None,
                   help="epochs of the final model that train --from trains (default: the preset's)")
    s.add_argument("--grace-period", type=int, default=None, help="ASHA: epochs before any stop")
    s.add_argument("--reduction-factor", type=int, default=None, help="ASHA: keep 1/R at each rung")
    s.add_argument("--searcher", default=None,
                   help="who proposes trials: tpe, gp, random or centred (near the space's default point) "
                        "(default: the preset's)")
    s.add_argument("--scheduler", default=None,
                   help="who stops them: asha, reliable (brackets by rung reliability) or fifo (default: the preset's)")
    s.add_argument("--brackets", type=int, default=None, help="Hyperband brackets of asha / reliable")
    s.add_argument("--concurrency", type=int, default=None, help="trials at once")
    s.add_argument("--cpus-per-trial", type=float, default=None)
    s.add_argument("--gpus-per-trial", type=float, default=None,
                   help="GPUs per trial (per worker with --workers-per-trial); 0.25 packs 4 trials per GPU")
    s.add_argument("--trials-per-gpu", type=int, default=None, help="same as --gpus-per-trial 1/N")
    s.add_argument("--workers-per-trial", type=int, default=None,
                   help="run each trial as a Ray Train TorchTrainer with K workers (multi-GPU trials)")
    s.add_argument("--epoch-budget", type=int, default=None,
                   help="trial-epochs, all trials together, after which no new trial starts (default: the preset's; "
                        "quick 40): training work, so a busy machine runs the same search, only slower")
    s.add_argument("--time-budget", type=float, default=None,
                   help="wall-time cap in seconds: trials still running then are cut, and labelled so")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--storage", default=None, help="results root (default ./runs)")
    s.add_argument("--name", default=None, help="experiment name (default: SPACE-DATE)")
    s.add_argument("--resume", action="store_true", help="continue an interrupted search of this name")
    s.add_argument("--warm-start", default=None, help="seed the search with the best configs of a run")
    s.add_argument("--init-from", default=None, metavar="MODEL_DIR",
                   help="every trial, and the final model, starts from the backbone of this trained model")
    s.add_argument("--address", default=None, help="Ray cluster address (or RAY_ADDRESS)")
    s.add_argument("--verbose", action="store_true", help="Ray's own progress output")
    s.add_argument("--log", dest="trackers", action="append", default=None, metavar="TRACKER[=WHERE]",
                   help="also log every trial (parameters, metrics per epoch, how it ended) and the best "
                        "configuration to an experiment tracker, beside TensorBoard; repeatable. "
                        + "; ".join(text for text, _, _ in TRACKERS.values())
                        + ". Each needs its extra, e.g. pip install \"deeplense-tuner[mlflow]\"; "
                          "a resumed search keeps logging where it did (docs/usage.md, Trackers)")
    s.set_defaults(handler=_cmd_search)

    best = sub.add_parser("best", help="leaderboard of a finished or interrupted run")
    best.add_argument("run_dir")
    best.add_argument("--top", type=int, default=10)
    best.set_defaults(handler=_cmd_best)

    cmp = sub.add_parser("compare", help="tune every architecture of a task on equal terms, test each once")
    cmp.add_argument("--task", required=True, metavar="TASK",
                     help="a registered task: classification, regression, anomaly, or a plugin's")
    cmp.add_argument("--spaces", default=None, help="comma-separated spaces of the task (default: all its "
                                                     "architecture spaces, e.g. effnet_cls,vit_cls,swin_cls)")
    cmp.add_argument("--preset", choices=("smoke", "quick", "long", "full"), default=None,
                     help="the searches' preset (default: quick on CPU, full with a GPU)")
    cmp.add_argument("--data", default=None, help="dataset directory or sim:INSTRUMENT[:N] (default: the preset's)")
    cmp.add_argument("--num-samples", type=int, default=None, help="trials per architecture")
    cmp.add_argument("--max-epochs", type=int, default=None, help="epoch budget of trials and final models")
    cmp.add_argument("--time-budget", type=float, default=None,
                     help="the same wall time (s) for every architecture's search, instead of the same trials")
    cmp.add_argument("--concurrency", type=int, default=None, help="trials at once")
    cmp.add_argument("--seed", type=int, default=0)
    cmp.add_argument("--train-per-class", default=None, metavar="N[,N...]|all",
                     help="label budgets: compare at each, on nested subsets of N labelled images per class "
                          "(one in five of them the validation cut), the test split the same, e.g. 100,500,1000")
    cmp.add_argument("--seeds", type=int, default=1,
                     help="train each final model K times (seeds SEED..SEED+K-1); intervals hold the seed spread")
    cmp.add_argument("--init-from", default=None, metavar="MODEL_DIR",
                     help="start every model from this trained model's backbone (e.g. a classifier for regression)")
    cmp.add_argument("--storage", default=None, help="results root (default ./runs)")
    cmp.add_argument("--name", default=None, help="comparison name (default: compare-TASK-DATE)")
    cmp.add_argument("--resume", action="store_true", help="continue an interrupted comparison of this name")
    cmp.add_argument("--address", default=None, help="Ray cluster address (or RAY_ADDRESS)")
    cmp.add_argument("--verbose", action="store_true", help="Ray's own progress output")
    cmp.add_argument("--log", dest="trackers", action="append", default=None, metavar="TRACKER[=WHERE]",
                     help="every architecture's search also logs to an experiment tracker, as `search --log` "
                          "does (mlflow: a store in each search's directory unless given a URI; wandb: offline, "
                          "grouped by architecture); repeatable; kept for --resume")
    cmp.set_defaults(handler=_cmd_compare)

    camp = sub.add_parser("campaign", help="a matrix of comparisons from a spec file (tasks x data x budgets), "
                                            "resumable, with a results page")
    camp.add_argument("spec", help="the campaign's TOML spec (e.g. docs/results/companion.toml)")
    camp.add_argument("--storage", default=None, help="results root (default ./runs)")
    camp.add_argument("--name", default=None, help="campaign name (default: the spec's name)")
    camp.add_argument("--resume", action="store_true", help="continue an interrupted campaign of this name")
    camp.add_argument("--address", default=None, help="Ray cluster address (or RAY_ADDRESS)")
    camp.add_argument("--verbose", action="store_true", help="Ray's own progress output")
    camp.add_argument("--publish", default=None, metavar="DIR",
                      help="run nothing: copy the campaign's page, rows and cell tables into DIR (e.g. docs/results)")
    camp.add_argument("--from", dest="from_published", default=None, metavar="DIR",
                      help="start this campaign from a published copy (--publish DIR): its finished cells are kept, "
                           "the rest run")
    camp.set_defaults(handler=_cmd_campaign)

    base = sub.add_parser("baseline", help="classical baselines of a task: fast models on hand-made features")
    base.add_argument("--task", required=True, metavar="{classification,regression,anomaly}")
    base.add_argument("--data", default=None,
                      help="dataset directory or sim:INSTRUMENT[:N] (default: the task's, as a quick search reads)")
    base.add_argument("--fit", default="train,val", help="comma-separated splits the baselines are fitted on")
    base.add_argument("--split", default="test", help="the split they are scored on")
    base.add_argument("--out", default=None, help="output directory (default: baseline-TASK-DATA under "
                                                  "$DEEPLENSE_TUNER_RUNS or ./runs)")
    base.set_defaults(handler=_cmd_baseline)

    report = sub.add_parser("report", help="report.html with figures of a search, a comparison or a model")
    report.add_argument("run_dir", help="a search run, a `tuner compare` run, or a trained model directory")
    report.set_defaults(handler=_cmd_report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tuner",
        description="Hyperparameter search for DeepLense strong-lensing models "
        "(classification, axion-mass regression, anomaly detection).",
    )
    sub = parser.add_subparsers(dest="command", required=True,
                                metavar="{search,compare,campaign,baseline,train,evaluate,best,report,spaces,data}")
    _add_search_commands(sub)
    _add_train_commands(sub)
    _add_data_commands(sub)
    for leaf in _leaves(parser):  # read by main before the parser is built; declared here for --help
        leaf.add_argument("--plugin", action="append", default=[], metavar="FILE_OR_MODULE",
                          help="a Python file or module that registers your own backbone, space, task or class "
                               "(docs/plugins.md); repeatable; also $DEEPLENSE_TUNER_PLUGINS")
    return parser


def _leaves(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parsers of the commands themselves (``data simulate``, not ``data``)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [parser]
    return [leaf for sub in subs for child in dict.fromkeys(sub.choices.values()) for leaf in _leaves(child)]


def _plugin_specs(argv: Sequence[str]) -> list[str]:
    """The ``--plugin`` values of a command line, found before it is parsed."""
    specs = []
    for i, arg in enumerate(argv):
        if arg == "--plugin" and i + 1 < len(argv):
            specs.append(argv[i + 1])
        elif arg.startswith("--plugin="):
            specs.append(arg.split("=", 1)[1])
    return specs


# ---------------------------------------------------------------- handlers (lazy imports inside)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from lensdata import substructure
    from tuner import api

    ranges = {r.key: _pair(getattr(args, r.key, None)) for r in substructure.parameter_ranges()}
    print(api.simulate(args.n, args.out, instrument=args.instrument, classes=args.classes, seed=args.seed,
                       overwrite=args.overwrite, workers=args.workers, batch_size=args.batch_size,
                       address=args.address, no_progress=args.no_progress, **ranges).info)
    return 0


def _pair(text: str | None) -> tuple[str, ...] | None:
    """``LOW,HIGH`` as its two parts (checked, with the model's limits, by the data layer)."""
    return None if text is None else tuple(text.split(","))


def _cmd_import(args: argparse.Namespace) -> int:
    from tuner import api

    print(api.import_data(args.src, args.out, seed=args.seed, overwrite=args.overwrite).info)
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from lensdata import dataset_info, resolve_data

    print(dataset_info(resolve_data(args.path), verify=args.verify))
    return 0


def _cmd_spaces(args: argparse.Namespace) -> int:
    from search_spaces import describe_spaces

    print(describe_spaces())
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from tuner.commands.train import train_command

    return train_command(args)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from tuner.commands.evaluate import evaluate_command

    return evaluate_command(args)


def _cmd_search(args: argparse.Namespace) -> int:
    from tuner.commands.search import search_command

    return search_command(args)


def _cmd_compare(args: argparse.Namespace) -> int:
    from tuner.commands.compare import compare_command

    return compare_command(args)


def _cmd_campaign(args: argparse.Namespace) -> int:
    from tuner.commands.campaign import campaign_command

    return campaign_command(args)


def _cmd_baseline(args: argparse.Namespace) -> int:
    from tuner.commands.baseline import baseline_command

    return baseline_command(args)


def _cmd_report(args: argparse.Namespace) -> int:
    from tuner.commands.report import report_command

    return report_command(args)


def _cmd_best(args: argparse.Namespace) -> int:
    from tuner.commands.best import best_command

    return best_command(args)


# A full or read-only disk: the user's environment, not a bug. Anything else that is an OSError is.
NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


def main(argv: Sequence[str] | None = None) -> int:
    """Load the plugins, parse ``argv`` and run the command; user errors print one line and return 2.

    Plugins load before the parser is built, so that what they register (a class's range flag, a
    space, a task) is there when the command line is read.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        from search_spaces.plugins import load_plugins

        load_plugins(_plugin_specs(argv))
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno not in NO_ROOM:
            raise
        written = err.filename2 or err.filename  # a failed copy names its source first, its target second
        where = f" writing {written}" if written else ""
        print(f"error: {err.strerror}{where}; free space (or pick a writable disk with --out / --storage / "
              "DEEPLENSE_TUNER_CACHE) and run the command again: finished results and datasets are kept",
              file=sys.stderr)
        return 2
    except Interrupted:  # stopped gracefully; it printed how to resume
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
