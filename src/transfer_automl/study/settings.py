"""`SearchSettings`: every setting of a search, typed once.

Each field's metadata (help text, range, choices, command-line flag, what a resumed search may
change) is the single description of that setting. From it come:

* the `taml search` flags (`add_arguments`, `given_settings`): no flag is typed by hand;
* the validation of what a pipeline passes (`SearchSettings.from_mapping`, one JSON mapping);
* the resume rule (`resumed`): `dataclasses.replace()` over the stored settings, where a setting
  marked `resume="free"` may change (and the change is recorded) and any other is refused with a
  message naming it.

Numbers are range-checked: NaN and infinities are refused everywhere, so a bad value never
reaches a checkpoint.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from typing import Any

from transfer_automl.errors import ConfigError

INIT_FROM = ("scratch", "resume", "transfer")
NORMALIZATIONS = ("std", "baseline")
BENCHMARKS = ("transnasbench101-micro", "nasbench201", "taml-text-real")
EMBEDDINGS = ("random", "closest", "mean")
FIDELITIES = ("none", "asha", "sha")  # search/fidelity.py
REFIT_MODES = ("none", "best", "topk", "ensemble")  # study/refit.py
TRANSFERS = ("none", "auto")  # auto: rank-ensemble over the task history's earlier searches (study/history.py)
MAX_SEED = 2**63 - 1

# What a new search runs unless told otherwise: the best setting measured on real text children
# (docs/benchmarks/taml_text_real.md, T = 50: REINFORCE at learning rate 0.01 with an update every
# 5 trials reached random search's target on 11 of 14 tasks, random search itself on 2). The
# papers' setting (learning rate 1e-4, an update after every child) moves the controller so little
# in hundreds of trials that it behaves like random search; it stays one flag away:
# `taml search --paper` (PAPER_SETTINGS). Other methods keep their papers' step sizes.
MEASURED_CONTROLLER_LR = {"reinforce": 0.01}
PAPER_SETTINGS = {"controller_lr": 1e-4, "batch_size": 1}


def _builtin_spaces() -> list[str]:
    from transfer_automl.space import BUILTIN_SPACES

    return list(BUILTIN_SPACES)


def _methods() -> list[str]:
    from transfer_automl.search import SEARCHES

    return sorted(SEARCHES)


def setting(default: Any = MISSING, *, help: str, low: float | None = None, high: float | None = None,
            low_open: bool = False, high_open: bool = False, choices: tuple | Callable[[], list] | None = None,
            flag: str | None = None, cli: bool = True, resume: str = "fixed", factory: Any = MISSING,
            pattern: str | None = None, listed: Callable[[], list[str]] | None = None,
            duration: bool = False) -> Any:
    """A dataclass field with the metadata the flags, the validation and the resume rule read.

    resume: "fixed" (a resumed search must keep the value) or "free" (it may change).
    pattern: a regular expression a text value must match whole.
    listed: the registered names the flag's help lists (read when the help is built, so a name
    registered later is listed too), for a setting that also takes other values (a file).
    duration: a number of seconds that may also be written 90s, 30m, 1.5h, 2d.
    """
    meta = {"help": help, "low": low, "high": high, "low_open": low_open, "high_open": high_open,
            "choices": choices, "flag": flag, "cli": cli, "resume": resume, "pattern": pattern,
            "listed": listed, "duration": duration}
    if factory is not MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class SearchSettings:
    """Everything one search does; logged whole as the controller run's params."""

    tasks: tuple[str, ...] = setting(
        (), help="comma-separated task names (or .parquet paths); tables: default all of the table's tasks")
    trials: int = setting(0, low=1, high=10_000_000, resume="free",
                          help="trials in total, across tasks (a resumed search may grow it)")
    out: str = setting("", resume="free",
                       help="run directory or s3://bucket/prefix (ledger/, checkpoint.pt, settings.json, space.yaml); "
                            "MLflow: unless MLFLOW_TRACKING_URI is set, the store shared by the searches started "
                            "here, ./mlflow.db or $TAML_HOME/mlflow.db (for s3:// one in $TAML_WORK_DIR)")
    space: str | None = setting(None, listed=_builtin_spaces,
                                help="a built-in space or a .yaml/.json file; text default: taml-text")
    method: str = setting("reinforce", choices=_methods,
                          help="search method: reinforce, ppo, pqt, transformer (controllers); rs, re, tpe (baselines); "
                               "rank-ensemble (transfer from earlier searches: --method-option sources=DIR,...)")
    method_options: dict[str, Any] = setting(
        factory=dict, flag="--method-option",
        help="the method's own settings, KEY=VALUE, repeatable: e.g. population_size=50 (re), n_startup_trials=5 "
             "(tpe), gradient_steps=10 (ppo), top_k=10 (pqt); any field of the update rule's config")
    init_from: str = setting("scratch", choices=INIT_FROM, resume="free",
                             help="start fresh, continue --out (resume), or transfer a pretrained controller (--from)")
    source: str | None = setting(None, flag="--from", resume="free",
                                 help="init-from transfer: a search directory (local or s3://) or its checkpoint.pt")
    embedding: str = setting("random", choices=EMBEDDINGS,
                             help="init-from transfer: a new task's embedding: random, or its transfer sources' "
                                  "closest row or mean (needs transfer_sources)")
    transfer_sources: dict[str, list[str]] = setting(
        factory=dict, help='init-from transfer: JSON {"new task": ["source task", ...]}, closest first')
    batch_size: int = setting(5, low=1, high=100_000,
                              help="trials per controller update (measured best 5; T-AML: 1, see --paper)")
    seed: int = setting(0, low=0, high=MAX_SEED, help="seeds the search, its controller and every child")
    controller_lr: float | None = setting(None, low=0, high=1, low_open=True,
                                          help="controller step size (default: reinforce 0.01, measured in "
                                               "docs/benchmarks/taml_text_real.md; other methods their paper's "
                                               "value; --paper: 1e-4)")
    normalization: str | None = setting(None, choices=NORMALIZATIONS,
                                        help="advantage (R-b)/sigma (std, T-AML) or (R-b)/b (baseline, MNMS)")
    baseline_decay: float | None = setting(None, low=0, high=1, high_open=True,
                                           help="EMA decay of the per-task baseline and std (default 0.95)")
    entropy_weight: float | None = setting(None, low=0, high=100,
                                           help="entropy bonus on the policy (default: the method's)")
    mixing_gamma: float = setting(0.1, low=0, high=1, help="init-from transfer: initial uniform-mixing weight")
    mixing_samples: int = setting(100, low=0, high=1_000_000_000,
                                  help="init-from transfer: samples over which the mixing decays to 0")
    reward_power: float = setting(1.0, low=0, high=10, low_open=True,
                                  help="reward = val accuracy ** power (T-AML: 1, MNMS: 3)")
    budget_scale: float = setting(0.05, low=0, high=100, low_open=True,
                                  help="multiplies the space's training budgets for CPU runs (1.0 = the papers')")
    trial_timeout: float | None = setting(None, low=0, high=7 * 24 * 3600, low_open=True, resume="free",
                                          help="text children: seconds per trial, then status timeout")
    benchmark: str | None = setting(None, choices=BENCHMARKS,
                                    help="look children up in a tabular NAS benchmark instead of training them")
    table: str | None = setting(None, help="look children up in your own Parquet/CSV table (decisions + metrics)")
    metric_columns: tuple[str, ...] = setting((), help="with --table: one metric column per task (higher is better)")
    data_dir: str | None = setting(None, resume="free",
                                   help="where task names resolve (default $TAML_DATA_DIR, ../shared/data/text, "
                                        "or the shipped samples)")
    cache_dir: str | None = setting(None, resume="free",
                                    help="frozen-feature cache, a directory or s3:// (default <out>/cache/features)")
    # It names files, MLflow experiments and every trial id (<search_id>/<step>/<k>).
    search_id: str | None = setting(None, pattern=r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}",
                                    help="letters, digits, '.', '_', '-' (default: <out dir name>-<UTC time>)")
    pack: int | None = setting(None, low=1, high=4096, resume="free",
                               help="text children trained at once on one device, stacked (children/packing.py); "
                                    "the same trials and seeds as one at a time (default: 64 on CUDA, 1 on CPU)")
    fidelity: str = setting("none", choices=FIDELITIES,
                            help="multi-fidelity search over the children's training budget: asha (asynchronous "
                                 "successive halving), sha (synchronous, one bracket per round; taml search only), "
                                 "none; promoted children continue from their weights")
    min_budget: float = setting(1 / 9, low=0, high=1, low_open=True,
                                help="with --fidelity: the lowest rung's budget, a fraction of each child's training "
                                     "steps (default 1/9)")
    max_budget: float = setting(1.0, low=0, high=1, low_open=True,
                                help="with --fidelity: the top rung's budget, a fraction of each child's training steps")
    eta: float = setting(3.0, low=1, high=100, low_open=True,
                         help="with --fidelity: reduction factor; rungs are max_budget * eta^-k and 1/eta of a "
                              "rung's children go on to the next")
    time_budget: float | None = setting(None, low=0, high=365 * 24 * 3600, low_open=True, resume="free",
                                        duration=True,
                                        help="wall time for this run of the search (90s, 30m, 2h or seconds): no new "
                                             "round starts unless its estimated cost fits what is left; then the "
                                             "search finishes as usual")
    cost_target_s: float | None = setting(None, low=0, high=365 * 24 * 3600, low_open=True,
                                          help="cost-aware reward for every method (MnasNet's soft constraint): reward x "
                                               "(cost / target)^w, cost a child's estimated seconds (study/cost.py; "
                                               "its measured seconds before the first estimate); the ledger keeps "
                                               "val_accuracy and records the reward used (default: off)")
    cost_weight: float = setting(-0.07, low=-10, high=0,
                                 help="with --cost-target-s: the exponent w (MnasNet: -0.07; 0 ignores the cost)")
    history: str | None = setting(None, resume="free",
                                  help="task history: a directory or s3:// prefix where every finished search is "
                                       "recorded and --transfer auto looks (default $TAML_HISTORY, else "
                                       "~/.cache/transfer-automl/history); none: nothing recorded, only the shipped starter "
                                       "history read")
    transfer: str = setting("none", choices=TRANSFERS,
                            help="auto: learn from the earlier searches of this space in the history and the "
                                 "shipped starter history (rank-ensemble over them; with none, a scratch search "
                                 "of --method)")
    top_n: int = setting(10, low=1, high=10_000, resume="free", help="accuracy-topN reported per task")
    refit: str = setting("topk", choices=REFIT_MODES, resume="free",
                         help="after the search, per task: topk retrains the --refit-k best configurations at the "
                              "full budget (budget scale 1.0) with early stopping on validation and registers the "
                              "best of them by validation accuracy; ensemble retrains them the same way and registers "
                              "all of them as one model, the mean of their class probabilities; best the best one "
                              "only; none registers the best child as the search trained it (study/refit.py)")
    refit_k: int = setting(3, low=1, high=100, resume="free",
                           help="with --refit topk or ensemble: configurations per task")
    progress: bool = setting(True, cli=False, resume="free", help="a progress bar on stderr")

    @property
    def tabular(self) -> bool:
        return bool(self.benchmark or self.table)

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], where: str = "settings") -> SearchSettings:
        """Settings from a JSON-like mapping (a pipeline parameter, settings.json), checked field by
        field; an unknown key is refused by name."""
        return cls(**_coerced(values, where)).validated(where)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (tuples as lists): what settings.json and the checkpoint hold."""
        return json.loads(json.dumps(asdict(self)))

    def validated(self, where: str = "settings") -> SearchSettings:
        """Itself, after every range, choice and cross-field check; ConfigError names the field."""
        for f in fields(self):
            _check_field(f, getattr(self, f.name), where)
        duplicates = sorted({t for t in self.tasks if self.tasks.count(t) > 1})
        if duplicates:
            raise ConfigError(f"{where}.tasks: {duplicates} listed more than once")
        if not self.tasks and not self.tabular:
            raise ConfigError(f"{where}.tasks: give at least one task")
        if not self.out:
            raise ConfigError(f"{where}.out: give the search directory")
        if (self.init_from == "transfer") != bool(self.source):
            raise ConfigError(f"{where}: init_from=transfer needs a source (--from: a search directory or "
                              "checkpoint), and a source needs init_from=transfer")
        if self.transfer == "auto" and self.init_from == "transfer":
            raise ConfigError(f"{where}.transfer: auto learns from the history; init_from=transfer (--from) "
                              "continues one search's controller: choose one")
        if self.history is not None:
            from transfer_automl.history import check_history_uri

            check_history_uri(self.history, f"{where}.history")
        if self.benchmark and self.space:
            raise ConfigError(f"{where}.space (--space) does not apply with a benchmark: its space is the "
                              f"benchmark table's columns; leave it out, or use --table with your own space")
        if self.benchmark and self.table:
            raise ConfigError(f"{where}: benchmark and table (--benchmark, --table) are alternatives; give one")
        if self.table and not self.metric_columns:
            raise ConfigError(f"{where}.metric_columns (--metric-columns): a table needs one metric column per task")
        if self.embedding != "random" and self.init_from == "transfer" and not self.transfer_sources:
            raise ConfigError(f"{where}.embedding {self.embedding!r} needs transfer_sources (the new tasks' "
                              "closest source tasks); use embedding random")
        _check_method_options(self.method, self.method_options, where)
        if self.fidelity != "none":
            if self.tabular:
                raise ConfigError(f"{where}.fidelity {self.fidelity!r}: a table holds one result per configuration, "
                                  "not results at smaller training budgets; use --fidelity none with "
                                  "--benchmark/--table")
            if self.min_budget > self.max_budget:
                raise ConfigError(f"{where}.min_budget {self.min_budget:g} is above max_budget {self.max_budget:g}")
        return self

    @property
    def rungs(self):
        """The successive-halving rungs (search/fidelity.py), None without --fidelity."""
        if self.fidelity == "none":
            return None
        from transfer_automl.search.fidelity import Rungs

        return Rungs(self.min_budget, self.max_budget, self.eta)

    def validate(self) -> None:
        self.validated()

    # -- resume ------------------------------------------------------------------------------------

    def resumed(self, given: Mapping[str, Any], where: str) -> tuple[SearchSettings, dict[str, tuple[Any, Any]]]:
        """These stored settings continued with the values a user gave again: (the settings, the
        changes {field: (old, new)}). A changed setting marked resume="free" is allowed; any other
        is refused, naming it. `trials` may only grow."""
        given = _coerced(given, "settings")
        changes = {k: (getattr(self, k), v) for k, v in given.items() if getattr(self, k) != v}
        for name, (old, new) in changes.items():
            if _meta(name)["resume"] != "free" and not (name == "search_id" and new is None):
                raise ConfigError(f"--resume: {name} is {new!r} but the search in {where} ran with {old!r}; "
                                  f"a resumed search keeps its {name}")
        if "trials" in changes and changes["trials"][1] < self.trials:
            raise ConfigError(f"--resume: trials {given['trials']} is fewer than the {self.trials} the search in "
                              f"{where} already has")
        recorded = {k: v for k, v in changes.items() if k not in ("init_from", "source", "progress")}
        kept = {k: v for k, v in given.items() if k != "search_id" or v is not None}
        return replace(self, **kept).validated(), recorded


# -- pipelines ---------------------------------------------------------------------------------------

# Settings a pipeline's shape fixes, not its settings mapping: the search_dir, the compiled rounds
# and children; the refit, a parameter of the pipeline's last step (one place to set it).
PIPELINE_SHAPED = {"out": "search_dir", "batch_size": "the pipeline's --children",
                   "trials": "--rounds x --children", "progress": "nothing (no progress bar in a pod)",
                   "pack": "the pipeline's --gpus (a round's children split into one pack per GPU pod)",
                   "refit": "the pipeline's refit parameter (its register_champion step's)",
                   "refit_k": "the pipeline's refit_k parameter (its register_champion step's)"}


def check_pipeline_settings(values: Mapping[str, Any], where: str = "settings") -> dict[str, Any]:
    """A pipeline's settings mapping, checked field by field (type, range, choices, unknown keys,
    keys the pipeline's shape sets) before anything runs; returns it coerced. Cross-field checks
    wait for the whole settings (init_search)."""
    shaped = sorted(set(values) & set(PIPELINE_SHAPED))
    if shaped:
        raise ConfigError(f"{where}: {shaped} are set by the pipeline ("
                          + "; ".join(f"{k}: {PIPELINE_SHAPED[k]}" for k in shaped) + "), not in the settings mapping")
    coerced = check_fields(values, where)
    if "method_options" in coerced:
        _check_method_options(coerced.get("method", "reinforce"), coerced["method_options"], where)
    if coerced.get("fidelity") == "sha":
        raise ConfigError(f"{where}.fidelity 'sha': synchronous successive halving promotes within a round, after "
                          "all its children ran, which a pipeline's compiled round does not do; use 'asha' (its "
                          "promotions are asked with each round)")
    if coerced.get("time_budget") is not None:
        raise ConfigError(f"{where}.time_budget: a pipeline runs its compiled rounds; bound it with the pipeline "
                          "run's own timeout, or use `taml search --time-budget`")
    return coerced


def check_fields(values: Mapping[str, Any], where: str = "settings") -> dict[str, Any]:
    """Some settings, each checked as its field says (type, range, choices); returns them coerced."""
    coerced = _coerced(values, where)
    for name, value in coerced.items():
        _check_field(SearchSettings.__dataclass_fields__[name], value, where)
    return coerced


def require_data_dir(values: Mapping[str, Any], where: str = "settings") -> None:
    """A pipeline's text or image tasks name where their data is: without `data_dir` a pod would
    resolve them to the 1,000-row samples shipped in the package (tasks/registry.py), and train on
    those without a word. Tables (`benchmark`, `table`), tasks given as .parquet paths and a
    resumed search (its stored settings) need none."""
    if values.get("data_dir") or values.get("benchmark") or values.get("table") or values.get("init_from") == "resume":
        return
    tasks = values.get("tasks") or ()
    if tasks and all(str(t).endswith(".parquet") for t in tasks):
        return
    raise ConfigError(f"{where}.data_dir: not given; the pipeline's pods would train on the 1,000-row samples "
                      "shipped in the package instead of your data. Give data_dir: an s3://bucket/prefix of "
                      "<task>.parquet files, or a directory mounted in the pods")


# -- flags -------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser, only: tuple[str, ...] | None = None) -> None:
    """One flag per setting (the metadata's help, choices and range); a flag not given stays out
    of the namespace, so `given_settings` tells what the user set from what defaulted. `only`:
    just these settings' flags (another command that takes a few of them)."""
    for f in fields(SearchSettings):
        meta = f.metadata
        if not meta["cli"] or (only is not None and f.name not in only):
            continue
        flag = meta["flag"] or "--" + f.name.replace("_", "-")
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": _flag_help(f)}
        if f.name == "method_options":
            kwargs.update(action="append", metavar="KEY=VALUE", type=_key_value)
        else:
            kwargs["type"] = _flag_parser(f)
            choices = meta["choices"]
            if choices is not None and not callable(choices):
                kwargs["choices"] = choices
        parser.add_argument(flag, **kwargs)


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings named on the command line (flags from `add_arguments`), as a mapping."""
    given = {f.name: getattr(args, f.name) for f in fields(SearchSettings) if hasattr(args, f.name)}
    if "method_options" in given:
        given["method_options"] = dict(given["method_options"])
    return given


def _flag_help(f) -> str:
    meta, default = f.metadata, f.default
    extra = []
    if meta["low"] is not None:
        lo = "(" if meta["low_open"] else "["
        hi = ")" if meta["high_open"] else "]"
        extra.append(f"range {lo}{_num(meta['low'])}, {_num(meta['high'])}{hi}")
    if default not in (MISSING, None, (), "", 0) and not isinstance(default, bool):
        extra.append(f"default {default}")
    if meta["listed"] is not None:
        extra.append("built-in: " + ", ".join(meta["listed"]()))
    return meta["help"] + (f" ({'; '.join(extra)})" if extra else "")


def _num(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else f"{value:,}" if value > 10**6 else str(value)


def _flag_parser(f) -> Callable[[str], Any]:
    kind = _kind(f)

    def parse(text: str) -> Any:
        try:
            value = _coerce_one(f.name, kind, text, "")
            if not callable(f.metadata["choices"]):  # a registry's names are checked with the rest
                _check_field(f, value, "")
            return value
        except ConfigError as exc:  # argparse prints "argument --flag: <this>"
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = kind  # argparse names the type in "invalid <type> value" messages
    return parse


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = value
    return key.strip(), parsed


# -- checking ----------------------------------------------------------------------------------------


def _meta(name: str) -> Mapping[str, Any]:
    return SearchSettings.__dataclass_fields__[name].metadata


def _kind(f) -> str:
    """int, float, str, bool, csv (a tuple of names) or mapping."""
    annotation = str(f.type)
    for kind, marker in (("csv", "tuple"), ("mapping", "dict"), ("bool", "bool"), ("int", "int"),
                         ("float", "float")):
        if annotation.startswith(marker):
            return kind
    return "str"


def _coerced(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where}: expected a mapping of settings, got {type(values).__name__}")
    known = SearchSettings.__dataclass_fields__
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {unknown}; known: {sorted(known)}")
    return {k: _coerce_one(k, _kind(known[k]), v, where) for k, v in values.items()}


def _coerce_one(name: str, kind: str, value: Any, where: str) -> Any:
    """One value in its field's type; strings (flags, a pipeline's UI) are parsed."""
    label = f"{where}.{name}" if where else name
    optional = "None" in str(SearchSettings.__dataclass_fields__[name].type)
    if value is None or (optional and value == ""):
        if optional:
            return None
        raise ConfigError(f"{label}: a value is required")
    if kind == "csv":
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
            raise ConfigError(f"{label}: expected a list of names, got {value!r}")
        return tuple(i.strip() for i in items if i.strip())
    if kind == "mapping":
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else {}
            except ValueError:
                raise ConfigError(f"{label}: expected a JSON object, got {value!r}") from None
        if not isinstance(value, Mapping):
            raise ConfigError(f"{label}: expected a mapping, got {value!r}")
        return {str(k): (list(v) if isinstance(v, tuple) else v) for k, v in value.items()}
    if kind == "bool":
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise ConfigError(f"{label}: expected true or false, got {value!r}")
        return value
    if kind == "int":
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise ConfigError(f"{label}: expected an integer, got {value!r}") from None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{label}: expected an integer, got {value!r}")
        return value
    if kind == "float":
        if isinstance(value, str) and SearchSettings.__dataclass_fields__[name].metadata.get("duration"):
            value = _seconds(value, label)
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise ConfigError(f"{label}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{label}: expected a number, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise ConfigError(f"{label}: expected a string, got {value!r}")
    return value


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(text: str, label: str) -> float:
    """'90s', '30m', '1.5h', '2d' or a plain number of seconds."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise ConfigError(f"{label}: expected a duration such as 90s, 30m, 2h or seconds, got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def _check_field(f, value: Any, where: str) -> None:
    meta = f.metadata
    label = f"{where}.{f.name}" if where else f.name
    if value is None:
        return
    _coerce_one(f.name, _kind(f), value, where)  # the type (a frozen dataclass may be built directly)
    if meta["pattern"] is not None and isinstance(value, str) and not re.fullmatch(meta["pattern"], value):
        raise ConfigError(f"{label}: {value!r} must match {meta['pattern']}")
    choices = meta["choices"]
    if choices is not None:
        allowed = list(choices() if callable(choices) else choices)
        if value not in allowed:
            raise ConfigError(f"{label}: unknown {value!r}; choose one of {allowed}")
    low, high = meta["low"], meta["high"]
    if low is None or isinstance(value, bool):
        return
    number = value if isinstance(value, int) else float(value)  # a float would round a 63-bit seed
    below = number <= low if meta["low_open"] else number < low
    above = number >= high if meta["high_open"] else number > high
    if (isinstance(number, float) and not math.isfinite(number)) or below or above:
        lo = "(" if meta["low_open"] else "["
        hi = ")" if meta["high_open"] else "]"
        what = "an integer" if _kind(f) == "int" else "a finite number"
        raise ConfigError(f"{label} must be {what} in {lo}{_num(low)}, {_num(high)}{hi}, got {value!r}")


def method_option_names(method: str) -> dict[str, str]:
    """{option: where it goes} for a search method: the keyword settings of a baseline search, the
    fields of a controller search's update rule config ("update")."""
    import inspect

    from transfer_automl.algorithms import UPDATE_RULES
    from transfer_automl.search import SEARCHES, ControllerSearch

    search_cls = SEARCHES[method]
    if isinstance(search_cls, type) and issubclass(search_cls, ControllerSearch):
        config_cls = UPDATE_RULES[search_cls.update_rule_name].config_class
        return {f.name: "update" for f in fields(config_cls)}
    own = inspect.signature(search_cls).parameters
    return {n: "search" for n, p in own.items()
            if n not in ("space", "tasks", "search_id", "seed") and p.kind == p.POSITIONAL_OR_KEYWORD}


def _check_method_options(method: str, options: Mapping[str, Any], where: str) -> None:
    if not options:
        return
    known = method_option_names(method)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"{where}.method_options: {unknown} are not settings of method {method!r}; "
                          f"it has {sorted(known) or 'none'}")
    for key, value in options.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}.method_options.{key} must be finite, got {value!r}")
