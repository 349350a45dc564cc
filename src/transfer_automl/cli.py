"""`taml`: the command line.

    taml search --tasks sms_spam,mpqa,customer_reviews --trials 60 --out runs/demo
    taml spaces              # built-in search spaces
    taml tasks               # tasks found in the data directory
    taml modules             # input embedding modules
    taml report runs/demo --compare runs/demo-rs --out report.html
    taml runs list runs      # the searches under a directory
    taml runs show runs/demo # one search: per-task summary and best configurations
    taml predict --model models:/taml-mpqa@champion --input texts.csv --out predictions.parquet

Listing and reporting commands take `--json` (one JSON document on stdout).
User errors (bad task, space file, setting, checkpoint) and what the machine refuses (disk full, no
permission) print one line and exit with code 2; a bug prints one line asking for a report and exits
with code 1 (TAML_DEBUG=1 shows the traceback).
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from transfer_automl.console import print_json, print_table
from transfer_automl.errors import ConfigError, TamlError

EXIT_USAGE = 2
EXIT_BUG = 1
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as `yes | head` reports
# `taml bench search` methods when --methods is not given (with --sources: every transfer peer and rank-ensemble)
_BENCH_METHODS = "rs,re,tpe,reinforce,ppo,pqt,transformer,transfer"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse prints its usage before the error; a user gets one line, like every taml error."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _examples(*lines: str) -> dict:
    """`add_parser` keywords for an epilog of examples, printed as written."""
    return {"epilog": "examples:\n" + "\n".join(f"  {line}" for line in lines),
            "formatter_class": argparse.RawDescriptionHelpFormatter}


class _IntermixedParser(_Parser):
    """`taml pipeline ...`: NAME=VALUE parameters may come before, between or after the options
    (argparse alone takes a positional list only in one piece)."""

    _inside = False

    def parse_known_args(self, args=None, namespace=None):
        if self._inside:  # parse_known_intermixed_args calls back here
            return super().parse_known_args(args, namespace)
        self._inside = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inside = False


def _pipeline_shape_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=_positive_int,
                        help="rounds per run, unrolled into the pipeline (at most 10; default: its own)")
    parser.add_argument("--max-trials", type=_positive_int,
                        help="multitask_search: the default budget; each run is a window of --rounds rounds and "
                             "submits the next until the budget is spent (the YAML does not grow with it)")
    parser.add_argument("--children", type=_positive_int, help="children per round (default: the pipeline's)")
    parser.add_argument("--parallelism", "--gpus", dest="parallelism", type=_positive_int,
                        help="GPUs held at once: a round's children are split into that many packs, one pack per "
                             "GPU pod, trained together (default: one child per pod, all of a round at once)")
    parser.add_argument("--cpu", action="store_true", help="children ask for no GPU node (CPU-only cluster)")


def _pipeline_target_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pipeline", help="a pipeline name: a directory of --pipelines-dir (multitask_search, ...)")
    parser.add_argument("params", nargs="*", metavar="NAME=VALUE",
                        help="pipeline parameters; lists as a,b or JSON, dicts as JSON")
    parser.add_argument("--pipelines-dir", default="pipelines", help="where the pipeline definitions live")
    _pipeline_shape_flags(parser)


def _kfp_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", required=True, help="Kubeflow Pipelines API URL, e.g. http://ml-pipeline-ui.kubeflow")
    parser.add_argument("--experiment", default="taml", help="experiment the runs go to (created if missing)")
    parser.add_argument("--namespace", help="the user namespace of a multi-user Kubeflow")
    parser.add_argument("--existing-token", help="multi-user Kubeflow: a bearer token for the API (e.g. `kubectl "
                        "create token default-editor -n PROFILE --audience pipelines.kubeflow.org`); default "
                        "$KF_PIPELINES_SA_TOKEN_PATH's token, when set")
    parser.add_argument("--cookie", help="multi-user Kubeflow: the login session cookie, NAME=VALUE "
                        "(e.g. authservice_session=... or oauth2_proxy_kubeflow=...)")
    parser.add_argument("--service-account", default="taml-pipeline-runner",
                        help="service account of the run's pods (manifests/base/rbac.yaml); '' for the server's default")


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout instead of text")


def _version() -> str:
    """The installed distribution's version (package metadata), else the source tree's."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("transfer-automl")
    except PackageNotFoundError:  # run from a source tree that is not installed
        import transfer_automl

        return transfer_automl.__version__


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="taml", description="Multitask and transfer neural model search.",
                     **_examples("taml search --tasks sms_spam,mpqa,customer_reviews --trials 60 --out runs/demo",
                                 "taml transfer --target customer_reviews --from runs/demo --out runs/cr",
                                 "taml report runs/demo --out report.html",
                                 "taml runs list runs --json",
                                 "taml spaces",
                                 "taml <command> --help   # each command's flags and examples"))
    parser.add_argument("--version", action="version", version=f"taml {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    s = sub.add_parser(
        "search", help="run a multitask model search on one machine",
        epilog="examples:\n"
        "  taml search --tasks sms_spam,mpqa,customer_reviews --trials 60 --out runs/demo\n"
        "  taml search --tasks sst2 --trials 60 --out runs/sst2 --init-from transfer --from runs/demo\n"
        "  taml search --benchmark nasbench201 --method pqt --trials 300 --out runs/nb201\n"
        "  taml search --benchmark transnasbench101-micro --tasks jigsaw --transfer auto --trials 10 --out runs/jig\n"
        "  taml search --table my.parquet --metric-columns task_a,task_b --method tpe --trials 100 --out runs/mine",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from transfer_automl.study.settings import add_arguments

    add_arguments(s)  # one flag per SearchSettings field, from its metadata
    s.add_argument("--resume", action="store_true", help="same as --init-from resume: continue --out with its "
                                                          "stored settings (give only what changes, e.g. --trials)")
    s.add_argument("--report", metavar="PATH",
                   help="after the search, write its HTML report (as `taml report`) to PATH, a new file")
    s.add_argument("--paper", action="store_true",
                   help="the papers' controller settings (learning rate 1e-4, an update after every trial) "
                        "instead of the measured default (0.01, every 5 trials); flags given win")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    _json_flag(s)

    b = sub.add_parser("bench", help="benchmarks that take minutes (not part of the tests)",
                       **_examples("taml bench search --benchmark nasbench201 --methods rs,pqt --seeds 5 --trials 100 "
                                   "--out runs/bench-nb201"))
    bsub = b.add_subparsers(dest="bench_command", required=True)
    bs = bsub.add_parser("search", help="search efficiency on a tabular NAS benchmark, leave-one-task-out transfer",
                         **_examples("taml bench search --benchmark transnasbench101-micro --seeds 20 --trials 200 "
                                     "--out runs/bench-tnb",
                                     "taml bench search --benchmark transnasbench101-micro --methods tpe,quantile,"
                                     "rank-ensemble --seeds 20 --target top1 --sources r200 --workers 1 --out runs/bench-tt"))
    bs.add_argument("--benchmark", required=True, choices=["transnasbench101-micro", "nasbench201", "taml-text-real"])
    bs.add_argument("--methods", default=_BENCH_METHODS,
                    help="comma-separated: rs, re, tpe, reinforce, ppo, pqt, transformer, transfer (with --sources: "
                         "rs, tpe, zero-shot, round-robin, bounding-box, quantile, rank-ensemble; default all)")
    bs.add_argument("--seeds", type=_positive_int, default=20)
    bs.add_argument("--trials", type=_positive_int, default=None,
                    help="trials per search (default 200; 100 with --sources)")
    bs.add_argument("--tasks", default="", help="held-out tasks to run (default: all)")
    bs.add_argument("--sources", default=None,
                    help="transfer from earlier searches' results instead (benchmarks/transfer_search.py): the "
                         "sources of each held-out task, r200 (200 random evaluations of every other task) or "
                         "search200 (the ledger of a 200-trial TPE search on every other task); methods: rs, tpe, "
                         "zero-shot, round-robin, bounding-box, quantile, rank-ensemble")
    bs.add_argument("--target", default="top1",
                    help="with --sources: count trials until a configuration of the held-out task's top N %% "
                         "(topN, default top1)")
    bs.add_argument("--shuffle-sources", action="store_true",
                    help="with --sources: permute each source's values among its rows (sources that predict nothing)")
    bs.add_argument("--transfer-base", default="pqt", help="controller search pretrained for transfer")
    bs.add_argument("--pretrain-trials", type=_positive_int, default=200, help="pretraining trials per source task")
    bs.add_argument("--workers", type=_positive_int, default=2, help="processes (one per core)")
    bs.add_argument("--data-dir", help="benchmark tables (default $TAML_BENCHMARK_DIR or ../shared/data/benchmarks)")
    bs.add_argument("--out", required=True)
    bs.add_argument("--force", action="store_true", help="replace existing output files (a search's own files are never replaced)")
    bs.add_argument("--no-progress", action="store_true", help="no progress bar")

    fu = sub.add_parser("fuse", help="FUSE: candidates trained jointly through a softmax(alpha) output mixture (image tasks)",
                        **_examples("taml fuse --task mnist_test --candidates 4 --budget 20 --out runs/fuse"))
    fu.add_argument("--task", required=True, help="image task: <source>, <source>:is<d> or <source>:odd_even")
    fu.add_argument("--out", required=True, help="directory for candidates.parquet and best.json")
    fu.add_argument("--force", action="store_true", help="replace existing output files (a search's own files are never replaced)")
    fu.add_argument("--space", default="fuse-image", help="fuse-image or a .yaml/.json space with its decisions")
    fu.add_argument("--candidates", type=_positive_int, default=4, help="C: candidates trained jointly per round")
    fu.add_argument("--budget", type=_positive_int, default=20, help="candidate trainings in all (rounds = budget // C)")
    fu.add_argument("--patience", type=int, default=0, help="stop when c* is unchanged this many rounds (0: never)")
    fu.add_argument("--steps", type=_positive_int, default=150, help="weight steps (and alpha steps) per round")
    fu.add_argument("--data-dir", help="image files (default $TAML_IMAGE_DIR or ../shared/data/images)")
    fu.add_argument("--seed", type=int, default=0)

    d = sub.add_parser("distance", help="Fisher log-determinant task distance matrix (probe networks)",
                       **_examples("taml distance --tasks digits_optdigits,digits_optdigits:is0,mnist_test --repeats 3 --out runs/dist",
                                   "taml distance --tasks sms_spam,mpqa,customer_reviews --repeats 3 --out runs/demo --json"))
    d.add_argument("--tasks", required=True, help="comma-separated tasks: image <source>[:is<d>|:odd_even] or text names")
    d.add_argument("--out", required=True, help="directory for distance.parquet and distance.png")
    d.add_argument("--force", action="store_true", help="replace existing output files (a search's own files are never replaced)")
    d.add_argument("--repeats", type=_positive_int, default=10, help="probe initialisations averaged (paper: 10)")
    d.add_argument("--sigma", type=_positive_float, default=1e-3, help="sigma in log(F + sigma^2)")
    d.add_argument("--modality", choices=["auto", "text", "image"], default="auto",
                   help="auto: image when the source file is in the image dir, else text")
    d.add_argument("--data-dir", help="task files (default $TAML_IMAGE_DIR or ../shared/data/images; text: as for search)")
    d.add_argument("--fisher-labels", choices=["target", "model"], default="target",
                   help="Fisher of the loss on the target's labels (empirical, default) or on labels sampled from the probe")
    d.add_argument("--seed", type=int, default=0)
    _json_flag(d)

    tr = sub.add_parser(
        "transfer", help="warm-start a new task from the closest task of a pretrained search",
        epilog="examples:\n"
        "  taml transfer --target customer_reviews --from runs/demo --out runs/cr\n"
        "  taml transfer --target customer_reviews --from runs/demo --out runs/cr-small --reduce-space --top-k 10\n"
        "--reduce-space writes space.yaml (the closest task's top-k choices) for a FRESH search with any method;\n"
        "a pretrained controller cannot be transferred onto a space with other choices, so no checkpoint is written.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tr.add_argument("--target", required=True, help="the new task (a task name in --data-dir or a .parquet path)")
    tr.add_argument("--from", dest="source", required=True, help="a search directory or its checkpoint.pt")
    tr.add_argument("--out", required=True, help="directory for checkpoint.pt (or, with --reduce-space, space.yaml)")
    tr.add_argument("--force", action="store_true", help="with --reduce-space: replace an existing space.yaml")
    tr.add_argument("--select", default="closest", help="closest, all, or one source task's name")
    tr.add_argument("--embedding", choices=["closest", "random", "mean"], default="closest",
                    help="the target's task embedding: the closest source's, the selected sources' mean, or random")
    tr.add_argument("--reduce-space", action="store_true",
                    help="write the closest source's top-k space for a fresh search instead of a warm-started checkpoint")
    tr.add_argument("--top-k", type=_positive_int, default=10, help="with --reduce-space: configurations that define the space")
    tr.add_argument("--repeats", type=_positive_int, default=3, help="probe initialisations per distance (paper: 10)")
    tr.add_argument("--mixing-gamma", type=float, default=0.1, help="initial uniform-mixing weight of the policy")
    tr.add_argument("--mixing-samples", type=int, default=100, help="samples over which mixing decays to 0")
    tr.add_argument("--data-dir", help="where task names resolve (as for search)")
    tr.add_argument("--seed", type=int, default=0)
    _json_flag(tr)

    pl = sub.add_parser("pipeline", help="Kubeflow pipelines (from a checkout: pipelines/ is not in the wheel)",
                        **_examples("taml pipeline compile --out build/pipelines",
                                    "taml pipeline run --local multitask_search search_dir=runs/kfp "
                                    "'settings={\"benchmark\": \"nasbench201\"}' --rounds 2 --children 2",
                                    "taml pipeline submit multitask_search --host http://localhost:8080 "
                                    "search_dir=s3://taml/searches/demo"))
    plsub = pl.add_subparsers(dest="pipeline_command", required=True, parser_class=_IntermixedParser)
    plc = plsub.add_parser("compile", help="compile every pipelines/<name>/pipeline.py to DIR/<name>.yaml",
                           **_examples("taml pipeline compile --out build/pipelines"))
    plc.add_argument("--out", required=True)
    plc.add_argument("--force", action="store_true", help="replace existing output files (a search's own files are never replaced)")
    plc.add_argument("--pipelines-dir", default="pipelines", help="where the pipeline definitions live")
    _pipeline_shape_flags(plc)
    plr = plsub.add_parser("run", help="run a pipeline on this machine through kfp.local (lightweight components "
                                       "in subprocesses of this Python)",
                           **_examples("taml pipeline run --local multitask_search search_dir=runs/kfp "
                                       "'settings={\"benchmark\": \"nasbench201\"}' --rounds 2 --children 2",
                                       "taml pipeline run --local transfer_search search_dir=runs/kfp-t "
                                       "target_tasks=sst2 source_search=runs/demo"))
    plr.add_argument("--local", action="store_true", required=True, help="run with kfp.local (the only local runner)")
    plr.add_argument("--pipeline-root", default="runs/kfp-local", help="where kfp.local writes task outputs")
    _pipeline_target_flags(plr)
    pls = plsub.add_parser("submit", help="upload a pipeline to Kubeflow Pipelines and start a run",
                           **_examples("taml pipeline submit multitask_search --host http://localhost:8080 "
                                       "search_dir=s3://taml/searches/demo 'settings={\"tasks\": [\"sms_spam\", \"mpqa\"]}'"))
    _pipeline_target_flags(pls)
    _kfp_flags(pls)
    pls.add_argument("--run-name", help="default: <pipeline>-<UTC time>")
    plh = plsub.add_parser("schedule", help="upload a pipeline to Kubeflow Pipelines and create a recurring run",
                           **_examples('taml pipeline schedule scheduled_retraining --cron "0 3 * * *" '
                                       "--host http://localhost:8080 search_root=s3://taml/searches tasks=sms_spam,mpqa"))
    _pipeline_target_flags(plh)
    _kfp_flags(plh)
    plh.add_argument("--cron", required=True, help='crontab expression, e.g. "0 3 * * *" (03:00 every day)')
    plh.add_argument("--name", help="the recurring run's name (default: <pipeline>-schedule)")

    cl = sub.add_parser("cluster", help="check a Kubernetes cluster before running the pipelines on it",
                        **_examples("taml cluster doctor --namespace taml"))
    clsub = cl.add_subparsers(dest="cluster_command", required=True)
    cld = clsub.add_parser("doctor", help="namespace, service account, secrets, MLflow, object store, GPUs",
                           **_examples("taml cluster doctor", "taml cluster doctor --namespace taml --context kind-taml"))
    cld.add_argument("--namespace", default="taml",
                     help="where the runs go: taml (overlays/local, aws), kubeflow (standalone KFP), or a profile's")
    cld.add_argument("--kfp-namespace", default="kubeflow", help="where Kubeflow Pipelines itself is installed")
    cld.add_argument("--probe-s3", action="store_true",
                     help="an external S3 endpoint: list TAML_BUCKET from this machine (its AWS credentials)")
    cld.add_argument("--kubeconfig", help="default: $KUBECONFIG or ~/.kube/config, else the in-cluster account")
    cld.add_argument("--context", help="kubeconfig context (default: the current one)")
    cld.add_argument("--children", type=_positive_int, default=4, help="children per round you plan to run")
    _json_flag(cld)

    sp = sub.add_parser("spaces", help="list the built-in search spaces", **_examples("taml spaces", "taml spaces --json"))
    _json_flag(sp)
    t = sub.add_parser("tasks", help="list the tasks in the data directory",
                       **_examples("taml tasks", "taml tasks --data-dir ../shared/data/text --json"))
    t.add_argument("--data-dir", help="default $TAML_DATA_DIR, ../shared/data/text, or the shipped samples")
    _json_flag(t)
    m = sub.add_parser("modules", help="list the input embedding modules", **_examples("taml modules", "taml modules --json"))
    _json_flag(m)

    rp = sub.add_parser(
        "report", help="a self-contained HTML report of a search: the papers' figures from its ledger and checkpoint",
        **_examples("taml report runs/demo --out report.html",
                    "taml report runs/demo --compare runs/demo-rs --out report.html   # beside a random search",
                    "taml report runs/nb201 --last 50 --out nb201.html --json"))
    rp.add_argument("search_dir", help="the search directory (ledger/, checkpoint.pt, optional distance.parquet)")
    rp.add_argument("--out", required=True, help="the HTML file to write")
    rp.add_argument("--force", action="store_true", help="replace --out if it exists (never a search's own file)")
    rp.add_argument("--compare", action="append", default=[], metavar="SEARCH_DIR",
                    help="another search on the same tasks (e.g. --method rs) drawn beside it; repeatable")
    rp.add_argument("--last", type=_positive_int, help="action heatmaps over each task's last N trials (default: all)")
    rp.add_argument("--data-dir", help="the search's --data-dir, for the reference figures (default: as for search)")
    rp.add_argument("--mlflow", action="store_true",
                    help="also log it as report.html into the search's controller run in MLflow")
    rp.add_argument("--tracking-uri", help="with --mlflow: default $MLFLOW_TRACKING_URI, else the search's store (DIR/tracking.json)")
    _json_flag(rp)

    pr = sub.add_parser(
        "predict", help="label the texts of a Parquet, CSV or JSON Lines file with a registered champion",
        **_examples("taml predict --model models:/taml-mpqa@champion --input texts.csv --out predictions.parquet",
                    "taml predict --model models:/taml-mpqa/3 --input s3://bucket/in.parquet --out s3://bucket/out.parquet "
                    "--column body --json"))
    pr.add_argument("--model", required=True, help="models:/taml-<task>@champion, models:/<name>/<version>, runs:/..., "
                                                   "or a model directory")
    pr.add_argument("--input", required=True, help="a .parquet, .csv or .jsonl file (local or s3://)")
    pr.add_argument("--out", required=True, help="the Parquet file of predictions: row, label, prob_<class>...")
    pr.add_argument("--column", default="text", help="the input column holding the texts (default: text)")
    pr.add_argument("--batch-size", type=_positive_int, default=1024, help="rows per prediction batch (default 1024)")
    pr.add_argument("--tracking-uri", help="the MLflow registry (default: $MLFLOW_TRACKING_URI)")
    pr.add_argument("--force", action="store_true", help="replace --out if it exists")
    pr.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    _json_flag(pr)

    r = sub.add_parser("runs", help="the searches under a directory, one search's results, its MLflow runs",
                       **_examples("taml runs list runs", "taml runs show runs/demo --top 5",
                                   "taml runs sync runs/demo --tracking-uri http://mlflow:5000",
                                   "taml runs register runs/demo", "taml runs repair runs/demo"))
    rsub = r.add_subparsers(dest="runs_command", required=True)
    rl = rsub.add_parser("list", help="the searches under a directory: id, method, tasks, trials, best per task",
                         **_examples("taml runs list", "taml runs list runs --json"))
    rl.add_argument("root", nargs="?", default="runs", help="directory searched up to 3 levels deep (default: runs)")
    _json_flag(rl)
    rw = rsub.add_parser("show", help="one search: summary per task and its best configurations",
                         **_examples("taml runs show runs/demo", "taml runs show runs/demo --top 5 --json"))
    rw.add_argument("search_dir", help="the search directory (ledger/, checkpoint.pt)")
    rw.add_argument("--top", type=_positive_int, default=3, help="best configurations shown per task")
    rw.add_argument("--data-dir", help="the search's --data-dir, for the reference figures (default: as for search)")
    _json_flag(rw)
    rs = rsub.add_parser("sync", help="log the ledger's trials that MLflow lacks (idempotent)",
                         **_examples("taml runs sync runs/demo",
                                     "taml runs sync runs/demo --tracking-uri http://mlflow:5000"))
    rs.add_argument("out", help="the search directory or s3:// uri (ledger/, checkpoint.pt)")
    rs.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else the search's store (DIR/tracking.json)")
    rr = rsub.add_parser("register", help="refit each task's best configurations, log the champion to MLflow, "
                                          "register it (alias champion only if better)",
                         **_examples("taml runs register runs/demo",
                                     "taml runs register runs/demo --refit none",
                                     "taml runs register runs/demo --tracking-uri http://mlflow:5000 --json"))
    rr.add_argument("out", help="the search directory (ledger/, checkpoint.pt)")
    rr.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else the search's store (DIR/tracking.json)")
    rr.add_argument("--data-dir", help="where the search's task names resolve (default: as for taml search)")
    from transfer_automl.study.settings import add_arguments

    add_arguments(rr, only=("refit", "refit_k"))  # default: what the search was run with
    _json_flag(rr)
    rx = rsub.add_parser("repair", help="set aside ledger files that keep a search from resuming "
                                        "(into DIR/quarantine/; nothing is deleted)",
                         **_examples("taml runs repair runs/demo", "taml runs repair s3://taml/searches/demo --json"))
    rx.add_argument("out", help="the search directory or s3:// uri")
    _json_flag(rx)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--version"]:  # at once: building the parser imports the search settings, and torch with them
        print(f"taml {_version()}")
        return 0
    args = build_parser().parse_args(argv)
    try:
        code = {"search": _search, "spaces": _spaces, "tasks": _tasks, "modules": _modules, "runs": _runs,
                "bench": _bench, "report": _report, "distance": _distance, "pipeline": _pipeline, "cluster": _cluster,
                "transfer": _transfer, "fuse": _fuse, "predict": _predict}[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush
        return code
    except TamlError as exc:
        print(f"taml: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("taml: interrupted; committed rounds are kept, continue with --resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `taml runs list --json | head`: the reader left; so do we, quietly
        return _stdout_closed()
    except OSError as exc:
        print(f"taml: error: {_os_error(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # a bug: one line and a request to report it, the traceback on demand
        if os.environ.get("TAML_DEBUG"):
            raise
        print(f"taml: internal error ({type(exc).__name__}: {_first_line(exc)}); please report it with the command "
              "line, and rerun with TAML_DEBUG=1 for the traceback", file=sys.stderr)
        return EXIT_BUG


def _stdout_closed() -> int:
    """Point stdout at /dev/null so the interpreter's last flush cannot fail again, and exit as a
    command killed by SIGPIPE does (128 + 13), without a word: the reader chose to stop reading."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real stdout (a test's capture): nothing to flush later
        pass
    return EXIT_BROKEN_PIPE


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else "no message"


def _os_error(exc: OSError) -> str:
    """One line for what the machine refused: disk full, permissions, a read-only file system."""
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno == errno.ENOSPC:
        return f"no space left on the device{where}; rounds already committed are kept: free space, then --resume"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"not allowed to write{where}: {exc.strerror}"
    return f"{exc.strerror or _first_line(exc)}{where}"


def _csv(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _search(args: argparse.Namespace) -> int:
    from transfer_automl.steps.search import run_search
    from transfer_automl.study.settings import given_settings

    given = given_settings(args)
    if args.resume:
        if given.get("init_from", "resume") != "resume":
            print(f"taml: error: --resume conflicts with --init-from {given['init_from']}", file=sys.stderr)
            return EXIT_USAGE
        given["init_from"] = "resume"
    if "out" not in given:
        print("taml search: error: --out is required (see --help)", file=sys.stderr)
        return EXIT_USAGE
    if given.get("init_from") != "resume" and "trials" not in given:
        print("taml search: error: --trials is required for a new search (see --help)", file=sys.stderr)
        return EXIT_USAGE
    if args.paper:
        from transfer_automl.study.settings import PAPER_SETTINGS

        given = {**PAPER_SETTINGS, **given}
    if args.report:
        from transfer_automl.outputs import check_output_file

        check_output_file(args.report, flag="--report")  # before any work
    settings = {**given, "progress": not args.no_progress}
    result = run_search(settings)
    report = _search_report(result, args.report, announce=not args.no_progress) if args.report else None
    if args.json:
        print_json({"search_id": result.search_id, "method": result.method, "trials_run": result.trials_run,
                    "wall_s": result.wall_s, "out": str(result.out), "data": result.data_location,
                    "ledger": str(result.ledger_dir), "checkpoint": str(result.checkpoint),
                    "mlflow": result.tracking_location, "mlflow_runs_url": result.browse_url or None,
                    "tasks": [_task_summary(s) for s in result.per_task],
                    "models": result.champions.to_dict() if result.champions is not None else None,
                    "report": report, "stopped": result.stopped, "history": result.history_entry or None})
        return 0
    reference = result.per_task[0].reference if result.per_task else ""
    print_table(["task", "trials", "trained", "best val", "its test", "acc-top10", f"{reference} (test)"],
                [[s.task, s.trials, s.trained, s.best_val_accuracy, s.best_test_accuracy, s.accuracy_top_n,
                  s.reference_test] for s in result.per_task],
                title=f"search {result.search_id} ({result.method}): {result.trials_run} trials run in {result.wall_s:.0f} s",
                numeric=[False] + [True] * 6)
    if result.stopped:
        print(f"stopped:    {result.stopped}")
    print(f"data:       {result.data_location}")
    print(f"ledger:     {result.ledger_dir}  (pyarrow.dataset.dataset(...))")
    print(f"checkpoint: {result.checkpoint}")
    if result.history_entry:
        print(f"history:    {result.history_entry}")
    print(f"mlflow:     {result.tracking_location}")
    if result.tracking_location.startswith("sqlite:"):
        print(f"browse:     mlflow ui --backend-store-uri {result.tracking_location}, then {result.browse_url}"
              if result.browse_url else f"browse:     mlflow ui --backend-store-uri {result.tracking_location}")
    elif result.browse_url:
        print(f"browse:     {result.browse_url}")
    for line in result.champions.lines() if result.champions is not None else []:
        print(line)
    if report:
        print(f"report:     {report}")
    return 0


def _search_report(result, path: str, announce: bool) -> str:
    """The finished search's HTML report (the last phase of `taml search --report`)."""
    from transfer_automl.report import build_report
    from transfer_automl.storage import atomic_write

    if announce:
        print(f"report: drawing the report of {result.out} into {path}", file=sys.stderr, flush=True)
    page = build_report(str(result.out))
    return str(atomic_write(Path(path), lambda tmp: Path(tmp).write_text(page.html, encoding="utf-8")))


def _task_summary(s) -> dict:
    """A TaskSummary as the JSON outputs write it."""
    return {"task": s.task, "trials": s.trials, "trained": s.trained, "best_val_accuracy": s.best_val_accuracy,
            "best_test_accuracy": s.best_test_accuracy, "accuracy_top_n": s.accuracy_top_n,
            "reference": s.reference, "reference_val": s.reference_val, "reference_test": s.reference_test,
            "best_config": s.best_config}


def _report(args: argparse.Namespace) -> int:
    from transfer_automl.outputs import check_output_file
    from transfer_automl.report import build_report
    from transfer_automl.storage import atomic_write

    check_output_file(args.out, args.force)
    with _working(f"drawing the report of {args.search_dir}", enabled=not args.json):
        report = build_report(args.search_dir, args.compare, args.last, args.data_dir)
    out = atomic_write(Path(args.out), lambda tmp: Path(tmp).write_text(report.html, encoding="utf-8"))
    size = out.stat().st_size
    mlflow_run = None
    if args.mlflow:
        from transfer_automl.steps.report_steps import log_report

        mlflow_run = log_report(args.search_dir, out, args.tracking_uri)
    if args.json:
        print_json({"out": str(out), "bytes": size, "mlflow_run_id": mlflow_run, "search_id": report.search.search_id,
                    "method": report.search.method, "trials": len(report.search.rows), "figures": report.figures,
                    "sections": report.sections, "omitted": report.omitted,
                    "compare": [{"search_id": c.search_id, "method": c.method, "location": c.location}
                                for c in report.compare]})
        return 0
    print(f"wrote {out} ({size:,} bytes, {report.figures} figures, sections: {', '.join(report.sections)})")
    for section, why in report.omitted.items():
        print(f"  not shown: {section}: {why}")
    if mlflow_run:
        print(f"logged as report.html to MLflow run {mlflow_run}")
    return 0


def _working(message: str, enabled: bool = True):
    """A spinner on stderr for work without a countable total."""
    import contextlib

    if not enabled or not sys.stderr.isatty():
        return contextlib.nullcontext()
    from rich.console import Console

    return Console(stderr=True).status(message)


def _bench(args: argparse.Namespace) -> int:
    # benchmarks/ sits beside pipelines/ in a checkout: the working directory, or the checkout of
    # an editable install (src/transfer_automl/cli.py -> the repo root)
    roots = (Path.cwd(), Path(__file__).resolve().parents[2])
    root = next((r for r in roots if (r / "benchmarks" / "search_efficiency.py").is_file()), None)
    if root is None:
        raise TamlError("taml bench needs a checkout (benchmarks/ is not in the wheel); run it from the repo root")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))  # also the spawned workers' path
    if args.sources is not None:
        return _bench_transfer(args)
    for flag, given in (("--shuffle-sources", args.shuffle_sources), ("--target", args.target != "top1")):
        if given:
            raise ConfigError(f"{flag} applies only with --sources (the transfer benchmark)")
    from benchmarks.search_efficiency import BenchSettings, run_benchmark
    from transfer_automl.outputs import check_output_dir

    check_output_dir(args.out, ["summary.md", "results.parquet", "regret_*.png"], args.force)

    settings = BenchSettings(
        benchmark=args.benchmark, out=args.out, methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
        seeds=args.seeds, trials=args.trials or 200, tasks=tuple(t for t in args.tasks.split(",") if t),
        transfer_base=args.transfer_base, pretrain_trials_per_task=args.pretrain_trials, workers=args.workers,
        data_dir=args.data_dir,
    )
    result = run_benchmark(settings, progress=not args.no_progress)
    print((Path(result["out"]) / "summary.md").read_text(encoding="utf-8"))
    print(f"wall time {result['wall_s']:.0f} s; results in {result['out']} (summary.md, results.parquet, regret_*.png)")
    return 0


def _bench_transfer(args: argparse.Namespace) -> int:
    """`taml bench search --sources ...`: the transfer benchmark of benchmarks/transfer_search.py."""
    from benchmarks.transfer_search import (
        ALL_METHODS,
        TransferBenchSettings,
        parse_sources,
        run_benchmark,
    )
    from transfer_automl.outputs import check_output_dir

    kind, source_trials = parse_sources(args.sources)
    target = args.target.strip().lower()
    try:
        percent = float(target.removeprefix("top"))
    except ValueError:
        percent = math.nan
    if not target.startswith("top") or not 0 < percent < 100:
        raise ConfigError(f"--target must be topN with 0 < N < 100 (percent of the table's rows), got {args.target!r}")
    check_output_dir(args.out, ["summary.md", "summary.json", "curves.json"], args.force)
    methods = ALL_METHODS if args.methods == _BENCH_METHODS else tuple(m.strip() for m in args.methods.split(",") if m.strip())
    settings = TransferBenchSettings(
        benchmark=args.benchmark, out=args.out, methods=methods, seeds=args.seeds, trials=args.trials or 100,
        source_trials=source_trials, sources=kind, top_fraction=percent / 100,
        tasks=tuple(t for t in args.tasks.split(",") if t), shuffle_sources=args.shuffle_sources,
        workers=args.workers, data_dir=args.data_dir)
    result = run_benchmark(settings, progress=not args.no_progress)
    print((Path(result["out"]) / "summary.md").read_text(encoding="utf-8"))
    print(f"wall time {result['wall_s']:.0f} s; results in {result['out']} (summary.md, summary.json, curves.json)")
    return 0


def _distance(args: argparse.Namespace) -> int:
    import time

    from transfer_automl.outputs import check_output_dir
    from transfer_automl.transfer.distances import FisherLogDet
    from transfer_automl.transfer.fisher import ProbeConfig, load_probe_tasks

    check_output_dir(args.out, ["distance.parquet", "distance.png"], args.force)
    start = time.perf_counter()
    tasks = load_probe_tasks(list(_csv(args.tasks)), modality=args.modality, data_dir=args.data_dir)
    distance = FisherLogDet(sigma=args.sigma, config=ProbeConfig(fisher_labels=args.fisher_labels))
    with _working(f"probe networks: {len(tasks)} tasks x {args.repeats} repeats", enabled=not args.json):
        matrix = distance.matrix(tasks, repeats=args.repeats, seed=args.seed)
    parquet, png = matrix.write(args.out, title=f"fisher_ld ({tasks[0].modality} probe), sigma={args.sigma}")
    if args.json:
        print_json({"tasks": matrix.names, "repeats": args.repeats, "sigma": args.sigma, "distances": matrix.rows(),
                    "parquet": str(parquet), "png": str(png), "wall_s": time.perf_counter() - start})
        return 0
    print(f"d[source b (row), target t (column)], mean±std over {args.repeats} repeats:")
    print(matrix.format())
    print(f"wall time {time.perf_counter() - start:.1f} s; wrote {parquet} and {png}")
    return 0


def _fuse(args: argparse.Namespace) -> int:
    from transfer_automl.outputs import check_output_dir
    from transfer_automl.search.fuse import BEST_FILE, LEDGER_FILE, FuseSettings, run_fuse

    check_output_dir(args.out, [LEDGER_FILE, BEST_FILE], args.force)
    settings = FuseSettings(task=args.task, out=args.out, space=args.space, candidates=args.candidates,
                            budget=args.budget, patience=args.patience, steps=args.steps, seed=args.seed,
                            data_dir=args.data_dir)
    result = run_fuse(settings, progress=print)
    best = result.best
    print(f"c* after {result.rounds} rounds ({len(result.rows)} candidate trainings, {result.wall_s:.1f} s): "
          f"{best['config']}  val {best['val_accuracy']:.4f}  test {best['test_accuracy']:.4f}")
    print(f"wrote {result.ledger} and {result.best_file}")
    return 0


def _transfer(args: argparse.Namespace) -> int:
    from transfer_automl.outputs import check_output_dir
    from transfer_automl.steps.transfer_steps import TransferSettings, run_transfer

    check_output_dir(args.out, ["space.yaml"] if args.reduce_space else [], args.force)
    settings = TransferSettings(
        target=args.target, source=args.source, out=args.out, select=args.select, embedding=args.embedding,
        reduce_space=args.reduce_space, top_k=args.top_k, repeats=args.repeats, data_dir=args.data_dir,
        seed=args.seed, mixing_gamma=args.mixing_gamma, mixing_samples=args.mixing_samples,
    )
    with _working(f"ranking source tasks for {settings.target}", enabled=not args.json):
        result = run_transfer(settings)
    if args.json:
        print_json({"target": settings.target, "sources": [{"task": t, "distance": d} for t, d in result.sources],
                    "ranking": [{"task": t, "distance": d} for t, d in result.ranking],
                    "method": result.method, "checkpoint": str(result.checkpoint) if result.checkpoint else None,
                    "space_file": str(result.space_file) if result.space_file is not None else None,
                    "next_command": result.next_command})
        return 0
    chosen = {task for task, _ in result.sources}
    print(f"d[source, {settings.target}] (fisher_ld, mean over {settings.repeats} repeats), all {len(result.ranking)} "
          f"source tasks, closest first (* chosen by --select {settings.select}):")
    for rank, (task, d) in enumerate(result.ranking, start=1):
        print(f"{'*' if task in chosen else ' '} {rank:>2}. {task:<24}{d:.4f}")
    if result.space_file is not None:
        print(f"wrote {result.space_file}: the search space of {result.sources[0][0]}'s top {settings.top_k} "
              "configurations, for a fresh search with any method (a controller cannot be transferred onto it)")
    else:
        print(f"wrote {result.checkpoint}: the {result.method} search warm-started for {settings.target} "
              f"(embedding: {settings.embedding}), at step 0")
    print(f"next:  {result.next_command}")
    return 0


def _pipeline(args: argparse.Namespace) -> int:
    """Pipeline definitions load by path from a checkout (transfer_automl.kubeflow.pipelines)."""
    from transfer_automl.kubeflow import pipelines as kp

    options = kp.BuildOptions(rounds=args.rounds, children_per_round=args.children, gpu=not args.cpu,
                              parallelism=args.parallelism, max_trials=args.max_trials)
    if args.pipeline_command == "compile":
        from transfer_automl.outputs import check_output_dir

        default = options == kp.BuildOptions()
        check_output_dir(args.out, ["*.yaml"], args.force)
        for name, module in kp.pipeline_modules(args.pipelines_dir).items():
            written = module.compile_all(args.out) if default else \
                [kp.compile_to(kp.build(module, options, strict=False), Path(args.out) / f"{name}.yaml")]
            for path in written:
                print(f"wrote {path}")
        return 0
    module = kp.load_pipeline(args.pipeline, args.pipelines_dir)
    pipeline_func = kp.build(module, options)
    params = kp.parse_params(pipeline_func, args.params)
    if args.pipeline_command == "run":
        from transfer_automl.kubeflow.local import run_local

        run_local(pipeline_func, params, args.pipeline_root)
        print(f"pipeline {args.pipeline} finished; task outputs under {args.pipeline_root}")
        return 0
    import tempfile
    from datetime import UTC, datetime

    from transfer_automl.kubeflow import client

    if args.cookie is not None and "=" not in args.cookie:
        from transfer_automl.errors import ConfigError

        raise ConfigError(f"--cookie: expected NAME=VALUE (the session cookie's name and value), got "
                          f"{len(args.cookie)} characters without '='")
    auth = client.Auth(token=args.existing_token or None, cookie=args.cookie or None)
    with tempfile.TemporaryDirectory() as tmp:
        package = kp.compile_to(pipeline_func, Path(tmp) / f"{args.pipeline}.yaml")
        if args.pipeline_command == "submit":
            name = args.run_name or f"{args.pipeline}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
            done = client.submit(package, args.host, params, name, args.experiment, args.namespace,
                                 args.service_account, auth=auth)
            print(f"run {done.run_id} ({name}) of pipeline version {done.version_name} in experiment {args.experiment}")
        else:
            name = args.name or f"{args.pipeline}-schedule"
            done = client.schedule(package, args.host, args.cron, params, name, args.experiment, args.namespace,
                                   args.service_account, auth=auth)
            print(f"recurring run {done.recurring_run_id} ({name}) on cron {done.cron!r} (KFP's six fields) of "
                  f"pipeline version {done.version_name} in experiment {args.experiment}")
    return 0


def _cluster(args: argparse.Namespace) -> int:
    """Exit 0 when no check fails, 1 when one does (2 stays for bad input)."""
    import json

    from transfer_automl.kubeflow.doctor import api_client, diagnose

    report = diagnose(api_client(args.kubeconfig, args.context), args.namespace, args.kfp_namespace, args.probe_s3)
    parallelism = min(report.suggested_parallelism, args.children) if report.suggested_parallelism else None
    if args.json:
        print(json.dumps({"namespace": report.namespace, "ok": report.ok, "gpus": report.gpus,
                          "suggested_parallelism": parallelism, "kfp_version": report.kfp_version,
                          "kfp_mode": report.kfp_mode,
                          "checks": [c.__dict__ for c in report.checks]}, indent=1))
        return 0 if report.ok else 1
    for c in report.checks:
        print(f"{c.status.upper():<5} {c.name:<28} {c.detail}")
    if parallelism:
        print(f"\n{report.gpus} GPU(s): train up to {parallelism} children at once, e.g. "
              f"taml pipeline compile --out DIR --children {args.children} --gpus {parallelism}")
    else:
        print("\nno GPU nodes for the children: taml pipeline compile --out DIR --cpu")
    print("ready" if report.ok else "not ready: fix the failed checks above")
    return 0 if report.ok else 1


def _predict(args: argparse.Namespace) -> int:
    from transfer_automl.serving.predict import predict_file

    summary = predict_file(args.model, args.input, args.out, column=args.column, batch_size=args.batch_size,
                           tracking_uri=args.tracking_uri, progress=not args.no_progress and not args.json,
                           force=args.force)
    if args.json:
        print_json({"model": args.model, "input": args.input, **summary.to_dict()})
    else:
        counts = ", ".join(f"{label} {n}" for label, n in summary.labels.items())
        print(f"predicted {summary.rows} rows of {args.input} with {args.model} in {summary.seconds:.1f} s -> "
              f"{summary.out} ({counts})")
    return 0


def _refit_settings(args: argparse.Namespace) -> tuple[str, int]:
    """`--refit`/`--refit-k` as given, else as the search in args.out was run (SearchSettings' defaults)."""
    from transfer_automl.study import SearchDir
    from transfer_automl.study.settings import SearchSettings

    stored: dict = {}
    if not (hasattr(args, "refit") and hasattr(args, "refit_k")):
        directory = SearchDir.of(args.out)
        if directory.has_checkpoint():
            stored = dict(directory.load_checkpoint().get("search_settings", {}))
    defaults = SearchSettings.__dataclass_fields__
    return (getattr(args, "refit", stored.get("refit", defaults["refit"].default)),
            int(getattr(args, "refit_k", stored.get("refit_k", defaults["refit_k"].default))))


def _runs(args: argparse.Namespace) -> int:
    if args.runs_command == "list":
        return _runs_list(args)
    if args.runs_command == "show":
        return _runs_show(args)
    if args.runs_command == "register":
        from transfer_automl.study.champions import register_champions

        refit, refit_k = _refit_settings(args)
        report = register_champions(args.out, args.tracking_uri, data_dir=args.data_dir, refit=refit, refit_k=refit_k)
        if args.json:
            print_json({"search_id": report.search_id, "mlflow": report.tracking_location, **report.to_dict()})
        else:
            print("\n".join([f"search {report.search_id} -> {report.tracking_location or 'nothing'}", *report.lines()]))
        return 0
    if args.runs_command == "repair":
        from transfer_automl.study.repair import repair_search

        repaired = repair_search(args.out)
        if args.json:
            print_json({"search_id": repaired.search_id, "quarantine": repaired.quarantine,
                        "actions": [{"file": name, "done": what} for name, what in repaired.actions]})
        else:
            print("\n".join(repaired.lines()))
            if repaired.actions:
                print(f"continue with: taml search --out {args.out} --resume")
        return 0
    from transfer_automl.study.tracking import sync_runs

    result = sync_runs(args.out, args.tracking_uri)
    print(f"search {result.search_id} -> {result.tracking_location}: "
          f"synced {result.new} new runs, {result.present} already present")
    return 0


def _runs_list(args: argparse.Namespace) -> int:
    from transfer_automl.report import find_searches, load_search

    searches, unreadable = [], []
    for directory in find_searches(args.root):
        try:
            data = load_search(directory, with_references=False)
        except TamlError as exc:  # one damaged search does not hide the others
            unreadable.append({"dir": str(directory), "error": str(exc)})
            continue
        best = {s.task: s.best_val_accuracy for s in data.summaries()}
        searches.append({"search_id": data.search_id, "dir": str(directory), "method": data.method,
                         "tasks": data.tasks, "trials": len(data.rows), "best_val_accuracy": best})
    if args.json:
        print_json({"root": str(args.root), "searches": searches, "unreadable": unreadable})
        return 0
    for bad in unreadable:
        print(f"taml: warning: skipped {bad['dir']}: {bad['error']}", file=sys.stderr)
    if not searches:
        print(f"no searches under {args.root}")
        return 0
    print_table(["search", "dir", "method", "tasks", "trials", "best val per task"],
                [[s["search_id"], s["dir"], s["method"], ", ".join(s["tasks"]), s["trials"],
                  ", ".join(f"{t} {v:.4f}" if v == v else f"{t} n/a" for t, v in s["best_val_accuracy"].items())]
                 for s in searches],
                title=f"{len(searches)} searches under {args.root}",
                numeric=[False, False, False, False, True, False])
    return 0


def _runs_show(args: argparse.Namespace) -> int:
    from transfer_automl.report import load_search

    data = load_search(args.search_dir, data_dir=args.data_dir)
    summaries = data.summaries()
    best = {task: data.best_configs(task, args.top) for task in data.tasks}
    if args.json:
        print_json({"search_id": data.search_id, "dir": data.location, "method": data.method, "tasks": data.tasks,
                    "trials": len(data.rows), "top_n": data.top_n, "summary": [_task_summary(s) for s in summaries],
                    "best_configs": best, "data": data.data_record or None, "data_note": data.data_note})
        return 0
    reference = next((s.reference for s in summaries if s.reference != "n/a"), "reference")
    print_table(["task", "trials", "trained", "best val", "its test", f"acc-top{data.top_n}", f"{reference} (test)"],
                [[s.task, s.trials, s.trained, s.best_val_accuracy, s.best_test_accuracy, s.accuracy_top_n,
                  s.reference_test] for s in summaries],
                title=f"search {data.search_id} ({data.method}, {len(data.rows)} trials) in {data.location}",
                numeric=[False] + [True] * 6)
    print_table(["task", "rank", "val", "test", "config"],
                [[task, k, b["val_accuracy"], b["test_accuracy"], ", ".join(f"{n}={v}" for n, v in b["config"].items())]
                 for task, ranked in best.items() for k, b in enumerate(ranked, start=1)],
                title=f"best {args.top} configurations per task (by validation accuracy)",
                numeric=[False, True, True, True, False])
    if data.data_record.get("data_dir"):
        print(f"data: {data.data_record['data_dir']}" + (" (bundled samples)" if data.data_record.get("bundled_samples")
                                                          else ""))
    if data.data_note:
        print(f"note: {data.data_note}")
    return 0


def _spaces(args: argparse.Namespace) -> int:
    from transfer_automl.space import BUILTIN_SPACES

    if args.json:
        print_json({"spaces": [{"name": space.name, "decisions": len(space), "configurations": space.size(),
                                "fingerprint": space.fingerprint(), "choices": {d.name: list(d.choices)
                                                                                for d in space.decisions}}
                               for space in BUILTIN_SPACES.values()]})
        return 0

    for space in BUILTIN_SPACES.values():
        print(f"{space.name}  ({len(space)} decisions, {space.size():,} configurations, fingerprint {space.fingerprint()})")
        for d in space.decisions:
            print(f"  {d.name:<18} {list(d.choices)}")
    return 0


def _tasks(args: argparse.Namespace) -> int:
    from transfer_automl.tasks import available_tasks, data_dir

    if args.json:
        print_json({"data_dir": str(data_dir(args.data_dir)), "tasks": available_tasks(args.data_dir)})
        return 0
    print(f"tasks in {data_dir(args.data_dir)}:")
    for name in available_tasks(args.data_dir):
        print(f"  {name}")
    return 0


def _modules(args: argparse.Namespace) -> int:
    from transfer_automl.children.embeddings import MODULES
    from transfer_automl.children.image_modules import IMAGE_MODULES

    def languages(m) -> str:
        return ",".join(m.languages) if len(m.languages) <= 3 else f"{len(m.languages)} languages"

    if args.json:
        print_json({"modules": [{"name": m.name, "dimension": m.dimension, "languages": list(m.languages),
                                 "fine_tunable": m.fine_tunable, "installed": m.is_installed()}
                                for m in MODULES.values()],
                    "image_modules": [{"name": m.name, "dimension": m.dimension_label, "fine_tunable": m.fine_tunable,
                                       "installed": m.is_installed()} for m in IMAGE_MODULES.values()]})
        return 0

    print(f"{'name':<22}{'dim':>5}  {'languages':<14}{'fine-tunable':<14}{'installed':<10}")
    for m in MODULES.values():
        print(f"{m.name:<22}{m.dimension:>5}  {languages(m):<14}{str(m.fine_tunable):<14}{str(m.is_installed()):<10}")
    for m in IMAGE_MODULES.values():
        print(f"{m.name:<22}{m.dimension_label:>5}  {'images':<14}{str(m.fine_tunable):<14}{str(m.is_installed()):<10}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
