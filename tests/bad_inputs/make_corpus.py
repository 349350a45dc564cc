"""Regenerate the bad-input corpus: `python tests/bad_inputs/make_corpus.py`.

Each case is a folder with `args` (one command line; `{case}` is the case folder, `{out}` a run
directory seeded from the case's `out/` when it has one, `{samples}` the shipped task samples)
and `expect` (text the single error line must contain). Files the cases need are written here,
so the corpus stays reproducible; the test (`tests/unit/test_bad_inputs.py`) runs every case.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from transfer_automl.search.checkpoint import read_checkpoint_file
from transfer_automl.storage import LocalStore

HERE = Path(__file__).resolve().parent
TOY_ROWS = [{"depth": d, "act": a, "t1": d + (a == "relu"), "t2": -d + 0.5 * (a == "tanh")}
            for d in (1, 2, 3) for a in ("relu", "tanh")]


def case(name: str, args: str, expect: str, files: dict[str, str | bytes] | None = None) -> Path:
    folder = HERE / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "args").write_text(args + "\n")
    (folder / "expect").write_text(expect + "\n")
    for rel, content in (files or {}).items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return folder


def text_search_with_space(name: str, space_text: str, expect: str, suffix: str = ".yaml") -> None:
    case(name, f"search --tasks sms_spam --trials 2 --data-dir {{samples}} --out {{out}} --space {{case}}/space{suffix}",
         expect, {f"space{suffix}": space_text})


def task_case(name: str, table: pa.Table | bytes | None, expect: str) -> None:
    folder = case(name, "search --tasks {case}/task.parquet --trials 2 --out {out}", expect)
    if isinstance(table, pa.Table):
        pq.write_table(table, folder / "task.parquet")
    elif isinstance(table, bytes):
        (folder / "task.parquet").write_bytes(table)


def toy_search_case(name: str, extra: str, expect: str, prepare=None,
                    files: dict[str, str | bytes] | None = None) -> None:
    """A search over a small table whose `out/` holds a prepared (then damaged) search."""
    method = "" if "--method" in extra else "--method rs "  # rs: a checkpoint of a few KB
    with_search(name, f"search --table {{case}}/toy.parquet --metric-columns t1,t2 --trials 4 --out {{out}} "
                f"{method}{extra}", expect, prepare, files)


def with_search(name: str, args: str, expect: str, prepare=None,
                files: dict[str, str | bytes] | None = None) -> None:
    """Any command, with `out/` holding a finished two-trial search (then changed by `prepare`)."""
    folder = case(name, args, expect, files)
    pq.write_table(pa.Table.from_pylist(TOY_ROWS), folder / "toy.parquet")
    if prepare is not None:
        from transfer_automl.steps.search import run_search
        from transfer_automl.study import SearchSettings
        from transfer_automl.tracking import MemoryTracker

        out = folder / "out"
        run_search(SearchSettings(tasks=(), trials=2, out=str(out), table=str(folder / "toy.parquet"), method="rs",
                                  metric_columns=("t1", "t2"), progress=False, search_id="corpus"),
                   tracker=MemoryTracker())
        # The test copies the case elsewhere: the recorded table path follows it (see the test).
        settings = out / "settings.json"
        settings.write_text(settings.read_text().replace(str(folder), "{case}"))
        prepare(out)


def texts(n: int = 20) -> list[str]:
    return [f"message number {i}" for i in range(n)]


def main() -> None:
    for old in HERE.iterdir():
        if old.is_dir():
            shutil.rmtree(old)
    # -- search-space files ------------------------------------------------------------------
    ok = "  - {name: layers, choices: [1, 2]}\n"
    text_search_with_space("space_unknown_top_key", "decisions:\n" + ok + "budget: 3\n", "unknown key(s) ['budget']")
    text_search_with_space("space_unknown_decision_key", "decisions:\n  - {name: layers, choices: [1], range: 3}\n",
                           "unknown key(s) ['range']")
    text_search_with_space("space_empty_choices", "decisions:\n  - {name: layers, choices: []}\n", "'choices' is empty")
    text_search_with_space("space_duplicate_names", "decisions:\n" + ok + ok, "appear more than once")
    text_search_with_space("space_duplicate_choice", "decisions:\n  - {name: lr, choices: [0.1, 0.1]}\n",
                           "choice 0.1 appears twice")
    text_search_with_space("space_choices_not_list", "decisions:\n  - {name: lr, choices: 0.1}\n",
                           "'choices' must be a list")
    text_search_with_space("space_choice_is_mapping", "decisions:\n  - {name: lr, choices: [{a: 1}]}\n",
                           "is a dict")
    text_search_with_space("space_null_choice", "decisions:\n  - {name: lr, choices: [null, 0.1]}\n", "is a NoneType")
    text_search_with_space("space_invalid_yaml", "decisions: [\n  - {name: lr\n", "is not valid YAML")
    text_search_with_space("space_invalid_json", '{"decisions": [', "is not valid JSON", suffix=".json")
    text_search_with_space("space_top_level_list", "- {name: lr, choices: [1]}\n", "top level must be a mapping")
    text_search_with_space("space_missing_decisions", "name: nothing\n", "missing key 'decisions'")
    text_search_with_space(
        "space_dangling_condition",
        "decisions:\n  - {name: lr, choices: [0.1], condition: {parent: optimizer, values: [sgd]}}\n", "optimizer")
    text_search_with_space(
        "space_cyclic_condition",
        "decisions:\n  - {name: a, choices: [1, 2], condition: {parent: b, values: [1]}}\n"
        "  - {name: b, choices: [1, 2], condition: {parent: a, values: [1]}}\n", "'b'")
    text_search_with_space(
        "space_condition_value_not_a_choice",
        "decisions:\n  - {name: a, choices: [1, 2]}\n  - {name: b, choices: [1], condition: {parent: a, values: [3]}}\n",
        "3")
    text_search_with_space(
        "space_unknown_condition_key",
        "decisions:\n  - {name: a, choices: [1, 2]}\n"
        "  - {name: b, choices: [1], condition: {parent: a, values: [1], when: always}}\n", "when")
    text_search_with_space("space_wrong_extension", "decisions: []\n", "neither a built-in", suffix=".txt")
    text_search_with_space("space_decisions_the_trainer_lacks", "decisions:\n  - {name: kernel_size, choices: [3, 5]}\n",
                           "kernel_size")
    # -- task files --------------------------------------------------------------------------
    task_case("task_missing_column", pa.table({"text": texts(), "label": ["a", "b"] * 10}), "lacks column(s) ['split']")
    task_case("task_empty", pa.table({"text": pa.array([], pa.string()), "label": pa.array([], pa.string()),
                                      "split": pa.array([], pa.string())}), "has no rows")
    task_case("task_one_class", pa.table({"text": texts(), "label": ["a"] * 20, "split": [None] * 20}),
              "only one class")
    task_case("task_not_parquet", b"PAR1 this is not a parquet file", "not a readable Parquet file")
    task_case("task_bad_split_value", pa.table({"text": texts(), "label": ["a", "b"] * 10, "split": ["train", "dev"] * 10}),
              "['dev']")
    task_case("task_label_missing_in_train",
              pa.table({"text": texts(12), "label": ["a", "b"] * 5 + ["c", "c"],
                        "split": ["train"] * 8 + ["validation", "test"] * 2}), "label(s) ['c']")
    task_case("task_null_text", pa.table({"text": ["x", None] * 10, "label": ["a", "b"] * 10, "split": [None] * 20}),
              "column 'text' is null")
    task_case("task_non_utf8_text",
              pa.table({"text": pa.array([b"\xff\xfe caf\xe9"] * 20, pa.binary()), "label": ["a", "b"] * 10,
                        "split": [None] * 20}), "must hold strings")
    task_case("task_missing_file", None, "does not exist")
    # -- checkpoints -------------------------------------------------------------------------
    def truncate(out: Path) -> None:
        data = (out / "checkpoint.pt").read_bytes()
        (out / "checkpoint.pt").write_bytes(data[: len(data) // 2])

    def random_bytes(out: Path) -> None:
        (out / "checkpoint.pt").write_bytes(bytes(range(256)) * 8)

    def flip_one_bit(out: Path) -> None:
        data = bytearray((out / "checkpoint.pt").read_bytes())
        data[len(data) // 2] ^= 0x01
        (out / "checkpoint.pt").write_bytes(bytes(data))

    def unchecksummed(out: Path) -> None:  # what taml wrote before checksums (format_version 1)
        body = read_checkpoint_file(out / "checkpoint.pt")
        torch.save(dict(body, format_version=1), out / "checkpoint.pt")

    def rewrite(**changes):
        """Change fields and write the checkpoint again with a valid checksum (as save_checkpoint would)."""
        def apply(out: Path) -> None:
            body = read_checkpoint_file(out / "checkpoint.pt")
            for key, value in changes.items():
                if value is None:
                    body.pop(key)
                else:
                    body[key] = value
            buffer = io.BytesIO()
            torch.save(body, buffer)
            LocalStore(out).put_with_checksum("checkpoint.pt", buffer.getvalue())
        return apply

    toy_search_case("ckpt_truncated", "--resume", "fails its checksum", truncate)
    toy_search_case("ckpt_tampered", "--resume", "checkpoint.pt fails its checksum", flip_one_bit)
    toy_search_case("ckpt_unchecksummed_format_1", "--resume", "is a format_version 1 checkpoint", unchecksummed)
    toy_search_case("ckpt_random_bytes", "--resume", "is unreadable", random_bytes)
    toy_search_case("ckpt_format_version", "--resume", "format_version 99", rewrite(format_version=99))
    toy_search_case("ckpt_missing_field", "--resume", "lacks field(s) ['generator_state']", rewrite(generator_state=None))
    toy_search_case("ckpt_wrong_fingerprint", "--resume", "fingerprint", rewrite(space_fingerprint="0123456789abcdef"))
    toy_search_case("ckpt_wrong_tasks", "--resume", "is for tasks ['t1', 'zz']", rewrite(tasks=["t1", "zz"]))
    toy_search_case("ckpt_other_method", "--resume --method tpe", "method is 'tpe' but the search", lambda out: None)
    toy_search_case("ckpt_missing", "--resume", "holds no search")
    # -- ledger ------------------------------------------------------------------------------
    def foreign_round(out: Path) -> None:
        pq.write_table(pa.table({"trial": [1], "score": [0.5]}), out / "ledger" / "round-000000.parquet")

    def foreign_file(out: Path) -> None:
        pq.write_table(pa.table({"x": [1]}), out / "ledger" / "results.parquet")

    def unreadable_round(out: Path) -> None:
        (out / "ledger" / "round-000001.parquet").write_bytes(b"not parquet")

    toy_search_case("ledger_foreign_schema", "--resume", "foreign schema", foreign_round)
    toy_search_case("ledger_foreign_file", "--resume", "results.parquet", foreign_file)
    toy_search_case("ledger_unreadable_round", "--resume", "not readable Parquet", unreadable_round)
    toy_search_case("existing_search_without_resume", "", "already holds a search", lambda out: None)
    # -- command line ------------------------------------------------------------------------
    case("cli_unknown_task", "search --tasks sms_spam,no_such_task --trials 2 --data-dir {samples} --out {out}",
         "unknown task 'no_such_task'")
    case("cli_zero_trials", "search --tasks sms_spam --trials 0 --out {out}", "argument --trials: trials must be an integer in [1, 10,000,000], got 0")
    case("cli_negative_trials", "search --tasks sms_spam --trials -5 --out {out}", "argument --trials")
    case("cli_negative_budget", "search --tasks sms_spam --trials 2 --budget-scale -1 --out {out}",
         "argument --budget-scale")
    case("cli_nan_learning_rate", "search --tasks sms_spam --trials 2 --controller-lr nan --out {out}",
         "argument --controller-lr")
    case("cli_resume_and_transfer", "search --tasks sms_spam --trials 2 --resume --init-from transfer --from x --out {out}",
         "--resume conflicts with --init-from transfer")
    case("cli_transfer_without_from", "search --tasks sms_spam --trials 2 --init-from transfer --out {out}",
         "needs a source (--from")
    case("cli_benchmark_and_table", "search --benchmark nasbench201 --table t.csv --metric-columns a --trials 2 --out {out}",
         "alternatives")
    case("cli_unknown_method", "search --tasks sms_spam --trials 2 --method magic --data-dir {samples} --out {out}",
         "unknown 'magic'")
    case("cli_duplicate_task", "search --tasks mpqa,mpqa --trials 2 --data-dir {samples} --out {out}",
         "listed more than once")
    case("cli_no_tasks", "search --trials 2 --out {out}", "give at least one task")
    case("cli_unknown_command", "searhc --tasks a", "invalid choice: 'searhc'")
    more_cases(rewrite)


def more_cases(rewrite) -> None:
    """The hardening pass (issue 17): outputs, settings, hostile files, ledger and checkpoint contents."""
    keep = lambda out: None  # noqa: E731 - a finished search, left as it is
    toy = "--table {case}/toy.parquet --metric-columns t1,t2"
    # -- outputs never clobber a search --------------------------------------------------------
    with_search("out_report_over_checkpoint", "report {out} --out {out}/checkpoint.pt", "belongs to the search", keep)
    with_search("out_report_over_checkpoint_forced", "report {out} --out {out}/checkpoint.pt --force",
                "belongs to the search", keep)
    with_search("out_report_over_ledger_round", "report {out} --out {out}/ledger/round-000000.parquet --force",
                "belongs to the search", keep)
    with_search("out_report_over_settings", "report {out} --out {out}/settings.json", "belongs to the search", keep)
    with_search("out_report_into_directory", "report {out} --out {case}", "is a directory", keep)
    with_search("out_report_existing_file", "report {out} --out {case}/old.html", "--force", keep,
                {"old.html": "<p>an earlier report</p>"})
    case("out_report_of_nothing", "report {case}/nowhere --out {case}/r.html", "nowhere")
    case("out_search_into_file", f"search {toy} --trials 2 --out {{case}}/toy.parquet", "toy.parquet")
    with_search("out_search_inside_a_search", f"search {toy} --trials 2 --out {{out}}/ledger", "ledger", keep)
    case("out_distance_existing_file", "distance --tasks sms_spam,mpqa --data-dir {samples} --out {case}/d",
         "--force", {"d/distance.parquet": "an earlier matrix"})
    case("out_distance_into_file", "distance --tasks sms_spam,mpqa --data-dir {samples} --out {case}/d.json",
         "not a directory", {"d.json": "{}"})
    with_search("out_distance_over_checkpoint",
                "distance --tasks sms_spam,mpqa --data-dir {samples} --out {out}/ledger --force",
                "belongs to the search", keep)
    case("out_pipeline_compile_over_file", "pipeline compile --out {case}/compiled", "compiled",
         {"compiled": "a file, not a directory"})
    # -- settings: types, finite values, documented ranges -------------------------------------
    for flag, value, name in [("--entropy-weight", "nan", "entropy_nan"), ("--entropy-weight", "-1e30", "entropy_huge"),
                              ("--controller-lr", "1e300", "lr_huge"), ("--controller-lr", "inf", "lr_inf"),
                              ("--mixing-gamma", "nan", "mixing_nan"), ("--mixing-gamma", "1.5", "mixing_above_one"),
                              ("--budget-scale", "nan", "budget_nan"), ("--budget-scale", "inf", "budget_inf"),
                              ("--seed", "100000000000000000000000", "seed_huge"), ("--seed", "-1", "seed_negative"),
                              ("--seed", "1.5", "seed_float"), ("--trials", "1e9", "trials_float"),
                              ("--controller-lr", "fast", "lr_word")]:
        with_search(f"set_{name}", f"search {toy} --method reinforce --trials 2 {flag} {value} --out {{out}}",
                    f"argument {flag}")
    with_search("set_search_id_slash", f"search {toy} --trials 2 --search-id ../../etc --out {{out}}", "search_id")
    with_search("set_search_id_space", f"search {toy} --trials 2 --search-id 'my search' --out {{out}}", "search_id")
    case("set_space_with_benchmark", "search --benchmark transnasbench101-micro --trials 2 --space {case}/s.yaml "
         "--out {out}", "--space", {"s.yaml": "decisions:\n  - {name: layers, choices: [1, 2]}\n"})
    # -- hostile space files -------------------------------------------------------------------
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)) + "decisions:\n  - {name: layers, choices: [1, 2], description: *i}\n"
    text_search_with_space("space_alias_bomb", bomb, "alias")
    text_search_with_space("space_deep_nesting_yaml", "decisions: " + "[" * 200 + "]" * 200 + "\n", "nest")
    text_search_with_space("space_deep_nesting_json", '{"decisions": ' + "[" * 200 + "]" * 200 + "}", "nest",
                           suffix=".json")
    text_search_with_space("space_description_not_text",
                           "decisions:\n  - {name: layers, choices: [1, 2], description: [1, 2]}\n", "description")
    text_search_with_space("space_empty_file", "", "space.yaml")
    text_search_with_space("space_binary_garbage", "\x00\x01\x02\xff", "space.yaml")
    case("space_missing_file", "search --tasks sms_spam --trials 2 --data-dir {samples} --out {out} "
         "--space {case}/missing.yaml", "missing.yaml")
    case("space_is_a_directory", "search --tasks sms_spam --trials 2 --data-dir {samples} --out {out} "
         "--space {case}/dir.yaml", "dir.yaml", {"dir.yaml/inside": "x"})
    # -- hostile task files --------------------------------------------------------------------
    task_case("task_text_is_int", pa.table({"text": list(range(20)), "label": ["a", "b"] * 10, "split": [None] * 20}),
              "must hold strings")
    task_case("task_all_labels_null", pa.table({"text": texts(), "label": pa.array([None] * 20, pa.string()),
                                                "split": [None] * 20}), "label")
    task_case("task_zero_bytes", b"", "not a readable Parquet file")
    case("task_is_a_directory", "search --tasks {case}/task.parquet --trials 2 --out {out}", "task.parquet",
         {"task.parquet/part-0": "x"})
    # -- tables ----------------------------------------------------------------------------------
    case("table_missing_metric_column", "search --table {case}/t.csv --metric-columns t9 --trials 2 --out {out}",
         "t9", {"t.csv": "depth,t1\n1,0.5\n2,0.7\n"})
    case("table_non_numeric_metric", "search --table {case}/t.csv --metric-columns t1 --trials 2 --out {out}",
         "t1", {"t.csv": "depth,t1\n1,high\n2,low\n"})
    case("table_only_header", "search --table {case}/t.csv --metric-columns t1 --trials 2 --out {out}", "t.csv",
         {"t.csv": "depth,t1\n"})
    case("table_missing_file", "search --table {case}/none.csv --metric-columns t1 --trials 2 --out {out}", "none.csv")
    # -- ledger contents -------------------------------------------------------------------------
    def duplicate_row(out: Path) -> None:
        path = out / "ledger" / "round-000000.parquet"
        table = pq.read_table(path)
        pq.write_table(pa.concat_tables([table, table.slice(0, 1)]), path)

    def other_search_round(out: Path) -> None:
        path = out / "ledger" / "round-000000.parquet"
        table = pq.read_table(path)
        ids = table.column("search_id").to_pylist()
        table = table.set_column(table.schema.get_field_index("search_id"), "search_id",
                                 pa.array(["another"] * len(ids), table.schema.field("search_id").type))
        pq.write_table(table, out / "ledger" / "round-000099.parquet")

    def misnamed_round(out: Path) -> None:
        shutil.copy(out / "ledger" / "round-000000.parquet", out / "ledger" / "round--000001.parquet")

    toy_search_case("ledger_duplicated_row", "--resume --trials 6", "repair", duplicate_row)
    toy_search_case("ledger_round_of_another_search", "--resume --trials 6", "repair", other_search_round)
    toy_search_case("ledger_misnamed_round", "--resume --trials 6", "round--000001.parquet", misnamed_round)
    # -- checkpoint contents (valid checksum, bad field) -----------------------------------------
    toy_search_case("ckpt_negative_step", "--resume", "step", rewrite(step=-3))
    toy_search_case("ckpt_step_is_text", "--resume", "step", rewrite(step="seven"))
    toy_search_case("ckpt_generator_state_text", "--resume", "generator_state", rewrite(generator_state="seed"))
    toy_search_case("ckpt_tasks_not_a_list", "--resume", "tasks", rewrite(tasks="t1"))
    # -- the runs commands -----------------------------------------------------------------------
    case("runs_show_not_a_search", "runs show {case}", "search", {"notes.txt": "hello"})
    case("runs_repair_not_a_search", "runs repair {case}", "search", {"notes.txt": "hello"})
    case("runs_repair_missing", "runs repair {case}/gone", "gone")
    # -- transfer and distance -------------------------------------------------------------------
    case("transfer_from_missing", "transfer --target mpqa --from {case}/nothing --data-dir {samples} --out {out}",
         "nothing")
    case("distance_unknown_task", "distance --tasks sms_spam,no_such_task --data-dir {samples} --out {out}/d.json",
         "no_such_task")
    case("distance_one_task", "distance --tasks sms_spam --data-dir {samples} --out {out}", "at least 2 tasks")


if __name__ == "__main__":
    main()
    print(f"{sum(1 for p in HERE.iterdir() if p.is_dir())} cases in {HERE}")
