"""Batch prediction with a champion: texts from a Parquet, CSV or JSON Lines file (local or s3://)
to a Parquet file of predictions, streamed in batches.

    taml predict --model models:/taml-mpqa@champion --input texts.csv --out predictions.parquet

The input is read `batch_size` rows at a time (Parquet row batches, Arrow's streaming CSV reader,
JSON Lines line by line), so a file larger than memory streams through. The output has one row per
input row, in order: `row` (its index in the input), `label` and one `prob_<class>` column per
class, as the model returns them. Every refusal is one line naming the file and the column, row or
line: a missing column, an empty file, a null or non-text value, images given to a text model, an
unknown format.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transfer_automl.errors import PredictionError

FORMATS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
IMAGE_COLUMNS = ("pixels", "image", "image_bytes")  # what an image task file holds (tasks/images.py)


@dataclass
class PredictSummary:
    rows: int
    out: str
    seconds: float
    labels: dict[str, int] = field(default_factory=dict)  # predicted label -> rows

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "out": self.out, "seconds": round(self.seconds, 3), "labels": self.labels}


def input_format(path: str) -> str:
    suffix = Path(path.split("?")[0]).suffix.lower()
    if suffix not in FORMATS:
        raise PredictionError(f"input {path}: unknown format {suffix or '(no suffix)'!r}; use "
                              f"{', '.join(sorted(FORMATS))}")
    return FORMATS[suffix]


def _modality_error(path: str, names: list[str], column: str) -> PredictionError:
    images = [n for n in names if n in IMAGE_COLUMNS]
    if images:
        return PredictionError(f"input {path} holds images (column {images[0]!r}), but the model reads text "
                               f"(column {column!r})")
    return PredictionError(f"input {path} has no column {column!r} (columns: {names}); name the text column "
                           "with --column")


def _texts(values: list[Any], path: str, column: str, first_row: int) -> list[str]:
    for i, value in enumerate(values):
        if value is None:
            raise PredictionError(f"input {path} column {column!r} is null in row {first_row + i}")
        if isinstance(value, bytes):
            raise PredictionError(f"input {path} column {column!r} holds bytes in row {first_row + i} (images?), "
                                  "but the model reads text")
        if not isinstance(value, str):
            raise PredictionError(f"input {path} column {column!r} holds {type(value).__name__} in row "
                                  f"{first_row + i}, not text")
    return values


def _parquet_batches(local: Path, path: str, column: str, batch_size: int) -> Iterator[list[Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(local)
    except (pa.ArrowInvalid, OSError) as exc:
        raise PredictionError(f"input {path} is not a readable Parquet file: {exc}") from None
    names = handle.schema_arrow.names
    if column not in names:
        raise _modality_error(path, names, column)
    kind = handle.schema_arrow.field(column).type
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        raise PredictionError(f"input {path} column {column!r} holds binary data (images?), but the model reads text")
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)):
        raise PredictionError(f"input {path} column {column!r} holds {kind}, not text")
    for batch in handle.iter_batches(batch_size=batch_size, columns=[column]):
        yield batch.column(0).to_pylist()


def _csv_batches(local: Path, path: str, column: str, batch_size: int) -> Iterator[list[Any]]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        reader = pacsv.open_csv(local, convert_options=pacsv.ConvertOptions(
            column_types={column: pa.string()}, strings_can_be_null=False))
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" in str(exc):
            raise PredictionError(f"input {path} is empty: no header and no rows") from None
        raise PredictionError(f"input {path} is not a readable CSV file: {' '.join(str(exc).split())}") from None
    names = reader.schema.names
    if column not in names:
        raise _modality_error(path, names, column)
    pending: list[Any] = []
    try:
        for batch in reader:
            pending += batch.column(names.index(column)).to_pylist()
            while len(pending) >= batch_size:
                yield pending[:batch_size]
                pending = pending[batch_size:]
    except pa.ArrowInvalid as exc:
        raise PredictionError(f"input {path}: {' '.join(str(exc).split())}") from None
    if pending:
        yield pending


def _jsonl_batches(local: Path, path: str, column: str, batch_size: int) -> Iterator[list[Any]]:
    pending: list[Any] = []
    with open(local, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise PredictionError(f"input {path} line {number} is not JSON: {exc.msg}") from None
            if not isinstance(record, dict):
                raise PredictionError(f"input {path} line {number} is a {type(record).__name__}, not an object")
            if column not in record:
                raise _modality_error(f"{path} (line {number})", sorted(record), column)
            pending.append(record[column])
            if len(pending) == batch_size:
                yield pending
                pending = []
    if pending:
        yield pending


READERS = {"parquet": _parquet_batches, "csv": _csv_batches, "jsonl": _jsonl_batches}


def _rows_hint(local: Path, kind: str) -> int | None:
    """Rows for the progress bar where knowing them is cheap (Parquet metadata)."""
    if kind == "parquet":
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(local).metadata.num_rows
        except Exception:  # noqa: BLE001 - the reader reports an unreadable file properly
            return None
    return None


def predict_file(model_uri: str, input_path: str, out_path: str, *, column: str = "text", batch_size: int = 1024,
                 tracking_uri: str | None = None, progress: bool = False, force: bool = False) -> PredictSummary:
    """Predict every row of `input_path` with the model at `model_uri` into the Parquet file `out_path`
    (either may be an s3:// uri)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from transfer_automl.console import Progress
    from transfer_automl.storage import is_remote, split_uri
    from transfer_automl.tracking.mlflow import load_serving_model

    if batch_size < 1:
        raise PredictionError(f"batch_size must be >= 1, got {batch_size}")
    kind = input_format(input_path)
    if Path(out_path).suffix.lower() != ".parquet":
        raise PredictionError(f"--out {out_path}: predictions are written as Parquet; name a .parquet file")
    out_store, out_key = split_uri(out_path)
    if out_store.exists(out_key) and not force:
        raise PredictionError(f"--out {out_path} exists; pass --force to replace it")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="taml-predict-") as tmp:
        local_in = Path(input_path)
        in_store, in_key = split_uri(input_path)
        if is_remote(input_path):
            local_in = Path(tmp) / f"input{Path(in_key).suffix}"
            in_store.get_file(in_key, local_in)
        elif not local_in.is_file():
            raise PredictionError(f"input {input_path} does not exist or is not a file")
        if local_in.stat().st_size == 0:
            raise PredictionError(f"input {input_path} is empty")
        model, inputs = load_serving_model(model_uri, tracking_uri)
        if inputs and inputs != ["text"]:
            raise PredictionError(f"model {model_uri!r} reads columns {inputs}, not one column 'text': not a text "
                                  "champion")
        import itertools

        import pandas as pd

        batches = READERS[kind](local_in, input_path, column, batch_size)
        first = next(batches, None)  # the columns are checked before a progress bar is drawn
        if first is None:
            raise PredictionError(f"input {input_path} has no rows")
        _texts(first, input_path, column, 0)
        local_out = Path(tmp) / "predictions.parquet"
        writer, rows, labels = None, 0, {}
        with Progress(total=_rows_hint(local_in, kind), enabled=progress, unit="row", description="predict") as bar:
            for values in itertools.chain([first], batches):
                texts = _texts(values, input_path, column, rows)
                predicted = model.predict(pd.DataFrame({"text": texts}))
                predicted.insert(0, "row", range(rows, rows + len(texts)))
                table = pa.Table.from_pandas(predicted, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(local_out, table.schema)
                writer.write_table(table)
                for label, count in predicted["label"].value_counts().items():
                    labels[str(label)] = labels.get(str(label), 0) + int(count)
                rows += len(texts)
                bar.update(len(texts))
        writer.close()
        out_store.put_file(out_key, local_out)
    return PredictSummary(rows, str(out_path), time.perf_counter() - started, dict(sorted(labels.items())))
