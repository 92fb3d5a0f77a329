"""CICFlowMeter-style flow CSVs (CIC-IDS2017, CSE-CIC-IDS2018, ACI-IoT-2023) as one clean table.

The three datasets were written by different CICFlowMeter versions and post-processed by different
people, so the "same" CSV differs in small ways that break naive code:

* column names with leading spaces (CIC-IDS2017) and three naming schemes for the same feature
  (``Total Fwd Packets`` / ``Tot Fwd Pkts`` / ``Total Fwd Packet``); all are mapped onto our canonical
  names, which are the names of the CICFlowMeter-4 CSVs in ``shared/data/cicids2017`` and of our own
  flow table (``COLUMN_VARIANTS`` lists every known variant);
* a duplicated ``Fwd Header Length`` column (CIC-IDS2017): the first copy is kept;
* ``Infinity``/``-Infinity``/``NaN``/empty cells in rate columns (zero-duration flows): they become
  ``fill_value`` (0 by default: a rate over a zero-length interval carries no information), counted
  per column in the report;
* header lines repeated inside the data (CSE-CIC-IDS2018): dropped and counted;
* labels spelled differently per dataset: the raw label is kept in ``label_raw``, ``label`` is
  :func:`packetclip.traffic.labels.normalise_label` and ``mission`` its mission (``None`` outside the 4).

What was changed is reported in ``df.attrs["packetclip_report"]`` (a plain dict), so nothing is silent.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from packetclip.errors import DatasetFormatError
from packetclip.traffic.labels import mission_of, normalise_label

# Our canonical flow-table columns (CICFlowMeter-4 naming, as in shared/data/cicids2017).
CANONICAL_COLUMNS: tuple[str, ...] = (
    "id", "Flow ID", "Src IP", "Src Port",
    "Dst IP", "Dst Port", "Protocol", "Timestamp",
    "Flow Duration", "Total Fwd Packet", "Total Bwd packets", "Total Length of Fwd Packet",
    "Total Length of Bwd Packet", "Fwd Packet Length Max", "Fwd Packet Length Min", "Fwd Packet Length Mean",
    "Fwd Packet Length Std", "Bwd Packet Length Max", "Bwd Packet Length Min", "Bwd Packet Length Mean",
    "Bwd Packet Length Std", "Flow Bytes/s", "Flow Packets/s", "Flow IAT Mean",
    "Flow IAT Std", "Flow IAT Max", "Flow IAT Min", "Fwd IAT Total",
    "Fwd IAT Mean", "Fwd IAT Std", "Fwd IAT Max", "Fwd IAT Min",
    "Bwd IAT Total", "Bwd IAT Mean", "Bwd IAT Std", "Bwd IAT Max",
    "Bwd IAT Min", "Fwd PSH Flags", "Bwd PSH Flags", "Fwd URG Flags",
    "Bwd URG Flags", "Fwd RST Flags", "Bwd RST Flags", "Fwd Header Length",
    "Bwd Header Length", "Fwd Packets/s", "Bwd Packets/s", "Packet Length Min",
    "Packet Length Max", "Packet Length Mean", "Packet Length Std", "Packet Length Variance",
    "FIN Flag Count", "SYN Flag Count", "RST Flag Count", "PSH Flag Count",
    "ACK Flag Count", "URG Flag Count", "CWR Flag Count", "ECE Flag Count",
    "Down/Up Ratio", "Average Packet Size", "Fwd Segment Size Avg", "Bwd Segment Size Avg",
    "Fwd Bytes/Bulk Avg", "Fwd Packet/Bulk Avg", "Fwd Bulk Rate Avg", "Bwd Bytes/Bulk Avg",
    "Bwd Packet/Bulk Avg", "Bwd Bulk Rate Avg", "Subflow Fwd Packets", "Subflow Fwd Bytes",
    "Subflow Bwd Packets", "Subflow Bwd Bytes", "FWD Init Win Bytes", "Bwd Init Win Bytes",
    "Fwd Act Data Pkts", "Fwd Seg Size Min", "Active Mean", "Active Std",
    "Active Max", "Active Min", "Idle Mean", "Idle Std",
    "Idle Max", "Idle Min", "ICMP Code", "ICMP Type",
    "Total TCP Flow Time", "Label", "Attempted Category",
)

STRING_COLUMNS: frozenset[str] = frozenset({"Flow ID", "Src IP", "Dst IP", "Timestamp", "Label"})
NUMERIC_COLUMNS: tuple[str, ...] = tuple(c for c in CANONICAL_COLUMNS if c not in STRING_COLUMNS)

# Known spellings of the same columns in other releases -> canonical name. Matching ignores case,
# spaces and punctuation (see ``_key``), which also covers the snake_case of the Python cicflowmeter
# (``tot_fwd_pkts`` == ``Tot Fwd Pkts``) and lower-cased Kaggle copies.
COLUMN_VARIANTS: dict[str, str] = {
    # CIC-IDS2017 as published (GeneratedLabelledFlows / MachineLearningCVE)
    "Source IP": "Src IP",
    "Source Port": "Src Port",
    "Destination IP": "Dst IP",
    "Destination Port": "Dst Port",
    "Total Fwd Packets": "Total Fwd Packet",
    "Total Backward Packets": "Total Bwd packets",
    "Total Length of Fwd Packets": "Total Length of Fwd Packet",
    "Total Length of Bwd Packets": "Total Length of Bwd Packet",
    "Min Packet Length": "Packet Length Min",
    "Max Packet Length": "Packet Length Max",
    "CWE Flag Count": "CWR Flag Count",
    "Avg Fwd Segment Size": "Fwd Segment Size Avg",
    "Avg Bwd Segment Size": "Bwd Segment Size Avg",
    "Fwd Header Length.1": "Fwd Header Length",
    "Fwd Avg Bytes/Bulk": "Fwd Bytes/Bulk Avg",
    "Fwd Avg Packets/Bulk": "Fwd Packet/Bulk Avg",
    "Fwd Avg Bulk Rate": "Fwd Bulk Rate Avg",
    "Bwd Avg Bytes/Bulk": "Bwd Bytes/Bulk Avg",
    "Bwd Avg Packets/Bulk": "Bwd Packet/Bulk Avg",
    "Bwd Avg Bulk Rate": "Bwd Bulk Rate Avg",
    "Init_Win_bytes_forward": "FWD Init Win Bytes",
    "Init_Win_bytes_backward": "Bwd Init Win Bytes",
    "act_data_pkt_fwd": "Fwd Act Data Pkts",
    "min_seg_size_forward": "Fwd Seg Size Min",
    # CSE-CIC-IDS2018 (CICFlowMeter-V3) and the Python cicflowmeter
    "Tot Fwd Pkts": "Total Fwd Packet",
    "Tot Bwd Pkts": "Total Bwd packets",
    "TotLen Fwd Pkts": "Total Length of Fwd Packet",
    "TotLen Bwd Pkts": "Total Length of Bwd Packet",
    "Fwd Pkt Len Max": "Fwd Packet Length Max",
    "Fwd Pkt Len Min": "Fwd Packet Length Min",
    "Fwd Pkt Len Mean": "Fwd Packet Length Mean",
    "Fwd Pkt Len Std": "Fwd Packet Length Std",
    "Bwd Pkt Len Max": "Bwd Packet Length Max",
    "Bwd Pkt Len Min": "Bwd Packet Length Min",
    "Bwd Pkt Len Mean": "Bwd Packet Length Mean",
    "Bwd Pkt Len Std": "Bwd Packet Length Std",
    "Flow Byts/s": "Flow Bytes/s",
    "Flow Pkts/s": "Flow Packets/s",
    "Fwd IAT Tot": "Fwd IAT Total",
    "Bwd IAT Tot": "Bwd IAT Total",
    "Fwd Header Len": "Fwd Header Length",
    "Bwd Header Len": "Bwd Header Length",
    "Fwd Pkts/s": "Fwd Packets/s",
    "Bwd Pkts/s": "Bwd Packets/s",
    "Pkt Len Min": "Packet Length Min",
    "Pkt Len Max": "Packet Length Max",
    "Pkt Len Mean": "Packet Length Mean",
    "Pkt Len Std": "Packet Length Std",
    "Pkt Len Var": "Packet Length Variance",
    "FIN Flag Cnt": "FIN Flag Count",
    "SYN Flag Cnt": "SYN Flag Count",
    "RST Flag Cnt": "RST Flag Count",
    "PSH Flag Cnt": "PSH Flag Count",
    "ACK Flag Cnt": "ACK Flag Count",
    "URG Flag Cnt": "URG Flag Count",
    "CWR Flag Cnt": "CWR Flag Count",
    "ECE Flag Cnt": "ECE Flag Count",
    "Pkt Size Avg": "Average Packet Size",
    "Fwd Seg Size Avg": "Fwd Segment Size Avg",
    "Bwd Seg Size Avg": "Bwd Segment Size Avg",
    "Fwd Byts/b Avg": "Fwd Bytes/Bulk Avg",
    "Fwd Pkts/b Avg": "Fwd Packet/Bulk Avg",
    "Fwd Blk Rate Avg": "Fwd Bulk Rate Avg",
    "Bwd Byts/b Avg": "Bwd Bytes/Bulk Avg",
    "Bwd Pkts/b Avg": "Bwd Packet/Bulk Avg",
    "Bwd Blk Rate Avg": "Bwd Bulk Rate Avg",
    "Subflow Fwd Pkts": "Subflow Fwd Packets",
    "Subflow Fwd Byts": "Subflow Fwd Bytes",
    "Subflow Bwd Pkts": "Subflow Bwd Packets",
    "Subflow Bwd Byts": "Subflow Bwd Bytes",
    "Init Fwd Win Byts": "FWD Init Win Bytes",
    "Init Bwd Win Byts": "Bwd Init Win Bytes",
    "Init Fwd Win Bytes": "FWD Init Win Bytes",
    "Init Bwd Win Bytes": "Bwd Init Win Bytes",
    "Fwd Act Data Packets": "Fwd Act Data Pkts",
    "Fwd Seg Size Min": "Fwd Seg Size Min",
    "Dst IP Addr": "Dst IP",
    "Src IP Addr": "Src IP",
    "Protocol Type": "Protocol",
}

# Where the label lives, in the order we look (case-insensitive, whitespace-stripped).
LABEL_COLUMN_CANDIDATES: tuple[str, ...] = ("Label", "label", "Class", "Attack", "attack_cat", "Attack Type")

CSV_SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zip")

_KEY_DROP = re.compile(r"[^0-9a-z]+")
_SNIFF_BYTES = 1 << 16


def _key(name: str) -> str:
    return _KEY_DROP.sub("", name.lower())


def _column_lookup() -> dict[str, str]:
    lookup = {_key(c): c for c in CANONICAL_COLUMNS}
    for variant, canonical in COLUMN_VARIANTS.items():
        lookup.setdefault(_key(variant), canonical)
    return lookup


_COLUMN_LOOKUP = _column_lookup()


def canonical_column(name: str) -> str:
    """The canonical name of a (stripped) CSV column name; unknown names are returned stripped."""
    stripped = name.strip()
    return _COLUMN_LOOKUP.get(_key(stripped), stripped)


@dataclass
class FlowCsvReport:
    """What ``read_flow_csv`` changed or dropped; stored as a dict in ``df.attrs["packetclip_report"]``."""

    files: list[str] = field(default_factory=list)
    rows: int = 0
    fill_value: float = 0.0
    nonfinite_filled: int = 0
    nonfinite_by_column: dict[str, int] = field(default_factory=dict)
    renamed_columns: dict[str, str] = field(default_factory=dict)
    duplicate_columns_dropped: list[str] = field(default_factory=list)
    repeated_header_rows_dropped: int = 0
    rows_without_label_dropped: int = 0
    timestamps_unparsed: int = 0
    labels: dict[str, int] = field(default_factory=dict)
    labels_without_mission: dict[str, int] = field(default_factory=dict)

    def add_counts(self, target: dict[str, int], counts: dict[str, int]) -> None:
        for key, value in counts.items():
            target[key] = target.get(key, 0) + int(value)


def list_csv_files(path_or_dir) -> list[Path]:
    """The CSV files ``read_flow_csv`` would read: a file, a folder's CSVs sorted by name, or a list of
    either (in the order given, each file once)."""
    if not isinstance(path_or_dir, (str, Path)):
        files: list[Path] = []
        for item in path_or_dir:
            files.extend(p for p in list_csv_files(item) if p not in files)
        if not files:
            raise DatasetFormatError("no CSV files given")
        return files
    path = Path(path_or_dir)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(CSV_SUFFIXES))
        if not files:
            raise DatasetFormatError("no CSV files in this directory", path=str(path))
        return files
    if not path.exists():
        raise DatasetFormatError("no such file or directory", path=str(path))
    return [path]


def read_flow_csv(
    path_or_dir,
    *,
    label_column: str | None = None,
    fill_value: float = 0.0,
    chunksize: int = 200_000,
    parse_timestamps: bool = True,
    progress: bool = True,
) -> pd.DataFrame:
    """Read one CICFlowMeter CSV, every CSV in a directory, or a list of files and directories, into one
    clean DataFrame.

    Columns: canonical feature names (see ``CANONICAL_COLUMNS``; unknown columns are kept as read),
    ``label_raw``, ``label``, ``mission`` and ``source_file`` (file name, for per-file grouping).
    Files are read in chunks of ``chunksize`` rows, so parsing memory stays bounded; the result itself
    is in memory. Raises :class:`DatasetFormatError` naming the file for anything unreadable.
    """
    files = list_csv_files(path_or_dir)
    report = FlowCsvReport(fill_value=float(fill_value))
    frames: list[pd.DataFrame] = []
    total_bytes = sum(_file_size(p) for p in files)

    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("[bold]reading flows[/] {task.fields[name]}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        disable=not progress,
        transient=True,
    ) as bar:
        task = bar.add_task("read", total=total_bytes or None, name="")
        done_bytes = 0
        for path in files:
            bar.update(task, name=path.name)
            for chunk in _read_one(path, label_column, float(fill_value), chunksize, report,
                                   lambda pos, base=done_bytes: bar.update(task, completed=base + pos)):
                frames.append(chunk)
            done_bytes += _file_size(path)
            bar.update(task, completed=done_bytes)
            report.files.append(str(path))

    if frames:
        df = pd.concat(frames, ignore_index=True, sort=False)
    else:
        df = pd.DataFrame(columns=["label_raw", "label", "mission", "source_file"])
    if parse_timestamps and "Timestamp" in df.columns:
        parsed = parse_timestamp_column(df["Timestamp"])
        report.timestamps_unparsed = int(parsed.isna().sum() - df["Timestamp"].isna().sum())
        df["Timestamp"] = parsed
    report.rows = len(df)
    if len(df):
        report.labels = {str(k): int(v) for k, v in df["label"].value_counts().items()}
        no_mission = df.loc[df["mission"].isna(), "label"].value_counts()
        report.labels_without_mission = {str(k): int(v) for k, v in no_mission.items()}
    df.attrs["packetclip_report"] = asdict(report)
    return df


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _read_header(path: Path) -> list[str]:
    """First line of the file as CSV fields; rejects empty and binary files up front."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except IsADirectoryError as err:
        raise DatasetFormatError("is a directory, not a CSV file", path=str(path)) from err
    except OSError as err:
        raise DatasetFormatError(f"cannot read file: {err.strerror or err}", path=str(path)) from err
    if path.name.lower().endswith((".gz", ".bz2", ".xz", ".zip")):
        head = _decompressed_head(path)
    if not head.strip():
        raise DatasetFormatError("empty file, expected a CSV flow table", path=str(path))
    nul = head.find(b"\x00")
    if nul >= 0:
        raise DatasetFormatError("binary data, not a CSV flow table", path=str(path), offset=nul)
    first_line = head.split(b"\n", 1)[0].rstrip(b"\r")
    text = first_line.decode("utf-8", errors="replace").lstrip("\ufeff")
    try:
        fields = next(csv.reader(io.StringIO(text)), [])
    except csv.Error as err:
        raise DatasetFormatError(f"cannot parse the CSV header: {err}", path=str(path), offset=0) from err
    if len(fields) < 2:
        raise DatasetFormatError(
            f"not a CSV flow table: the header has {len(fields)} column(s)", path=str(path), offset=0
        )
    return fields


def _decompressed_head(path: Path) -> bytes:
    import bz2
    import gzip
    import lzma
    import zipfile

    name = path.name.lower()
    try:
        if name.endswith(".gz"):
            with gzip.open(path, "rb") as handle:
                return handle.read(_SNIFF_BYTES)
        if name.endswith(".bz2"):
            with bz2.open(path, "rb") as handle:
                return handle.read(_SNIFF_BYTES)
        if name.endswith(".xz"):
            with lzma.open(path, "rb") as handle:
                return handle.read(_SNIFF_BYTES)
        with zipfile.ZipFile(path) as archive:
            members = archive.namelist()
            if len(members) != 1:
                raise DatasetFormatError("a zipped CSV must hold exactly one file", path=str(path))
            with archive.open(members[0]) as handle:
                return handle.read(_SNIFF_BYTES)
    except (OSError, EOFError, lzma.LZMAError, zipfile.BadZipFile, ValueError) as err:
        raise DatasetFormatError(f"cannot decompress: {err}", path=str(path)) from err


def _find_label(names: list[str], label_column: str | None, path: Path) -> int:
    wanted = (label_column,) if label_column else LABEL_COLUMN_CANDIDATES
    stripped = [n.strip().lower() for n in names]
    for candidate in wanted:
        target = candidate.strip().lower()
        if target in stripped:
            return stripped.index(target)
    looked = ", ".join(wanted)
    raise DatasetFormatError(f"no label column (looked for {looked})", path=str(path), offset=0)


def _read_one(path, label_column, fill_value, chunksize, report, on_progress):
    """Yield cleaned chunks of one file."""
    raw_names = _read_header(path)
    label_pos = _find_label(raw_names, label_column, path)
    keep: list[int] = []
    names: list[str] = []
    seen: set[str] = set()
    for pos, raw in enumerate(raw_names):
        if pos == label_pos:
            name = "label_raw"
        else:
            stripped = raw.strip()
            name = canonical_column(stripped) if stripped else f"unnamed_{pos}"
            if name != stripped and stripped:
                report.renamed_columns[stripped] = name
            if name in ("label_raw", "label", "mission", "source_file"):
                name = f"{name}_{pos}"
        if name in seen:
            report.duplicate_columns_dropped.append(f"{path.name}:{raw.strip()}")
            continue
        seen.add(name)
        keep.append(pos)
        names.append(name)

    placeholders = [f"c{i}" for i in range(len(raw_names))]
    rename = {f"c{pos}": name for pos, name in zip(keep, names)}
    compressed = path.name.lower().endswith((".gz", ".bz2", ".xz", ".zip"))
    handle = None
    try:
        if compressed:
            source = path
        else:
            handle = open(path, "rb")
            source = handle
        reader = pd.read_csv(
            source,
            header=None,
            skiprows=1,
            names=placeholders,
            usecols=keep,
            chunksize=max(1, int(chunksize)),
            encoding="utf-8",
            encoding_errors="replace",
            on_bad_lines="skip",
            skipinitialspace=True,
            low_memory=False,
            dtype={f"c{label_pos}": str},
        )
        for chunk in reader:
            chunk = chunk.rename(columns=rename)
            yield _clean_chunk(chunk, raw_names[label_pos].strip(), path, fill_value, report)
            if handle is not None:
                on_progress(handle.tell())
    except DatasetFormatError:
        raise
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeError, ValueError,
            OverflowError, csv.Error, EOFError) as err:
        message = " ".join(str(err).split()) or type(err).__name__
        raise DatasetFormatError(f"cannot parse CSV: {message}", path=str(path)) from err
    except OSError as err:
        raise DatasetFormatError(f"cannot read file: {err.strerror or err}", path=str(path)) from err
    finally:
        if handle is not None:
            handle.close()


def _clean_chunk(chunk: pd.DataFrame, label_header: str, path: Path, fill_value: float,
                 report: FlowCsvReport) -> pd.DataFrame:
    labels = chunk["label_raw"].astype("string").str.strip()
    repeated = labels.str.lower() == label_header.lower()
    missing = labels.isna() | (labels == "")
    report.repeated_header_rows_dropped += int(repeated.fillna(False).sum())
    report.rows_without_label_dropped += int(missing.sum())
    keep = ~(repeated.fillna(False) | missing)
    if not keep.all():
        chunk = chunk.loc[keep.to_numpy()].reset_index(drop=True)
        labels = labels[keep].reset_index(drop=True)

    filled: dict[str, int] = {}
    columns: dict[str, object] = {}
    for column in chunk.columns:
        values = chunk[column]
        if column not in NUMERIC_COLUMNS:
            columns[column] = values.to_numpy()
            continue
        if not pd.api.types.is_numeric_dtype(values):
            values = pd.to_numeric(values.astype("string").str.strip(), errors="coerce")
        if pd.api.types.is_signed_integer_dtype(values) and not values.hasnans:
            columns[column] = values.to_numpy(dtype=np.int64)
        else:
            array = values.to_numpy(dtype=np.float64, na_value=np.nan)
            bad = ~np.isfinite(array)
            n_bad = int(bad.sum())
            if n_bad:
                array = array.copy()
                array[bad] = fill_value
                filled[column] = n_bad
            columns[column] = array
    report.add_counts(report.nonfinite_by_column, filled)
    report.nonfinite_filled += sum(filled.values())

    uniques = labels.unique()
    label_map = {raw: normalise_label(raw) for raw in uniques}
    mission_map = {raw: mission_of(raw) for raw in uniques}
    columns["label_raw"] = labels.astype(object).to_numpy()
    columns["label"] = labels.map(label_map).astype(object).to_numpy()
    columns["mission"] = labels.map(mission_map).astype(object).to_numpy()
    columns["source_file"] = np.full(len(chunk), path.name, dtype=object)
    return pd.DataFrame(columns, index=pd.RangeIndex(len(chunk)))


_ISO_RE = re.compile(r"^\s*\d{4}-\d{2}-\d{2}")
_SLASH_RE = re.compile(r"^\s*(\d{1,2})/(\d{1,2})/(\d{2,4})")


def parse_timestamp_column(values: pd.Series) -> pd.Series:
    """CICFlowMeter timestamps as ``datetime64[ns]`` (naive, as written; unparseable -> NaT).

    ISO (``2017-07-07 12:59:21.088203``) is parsed directly. Slash dates are day-first (CIC-IDS2017,
    CSE-CIC-IDS2018 and CICFlowMeter-4 all write ``dd/MM/yyyy``) unless a second field above 12 proves
    the file month-first; ``AM``/``PM`` suffixes are honoured; explicit UTC offsets are converted to UTC.
    Distinct strings are parsed once, so second-resolution timestamps of big files parse fast.
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        if getattr(values.dt, "tz", None) is not None:
            return values.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]")
        return values.astype("datetime64[ns]")
    if pd.api.types.is_numeric_dtype(values):
        return epoch_to_datetime(values)
    text = values.astype("string").str.strip()
    present = text.dropna()
    empty = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    if present.empty:
        return empty
    try:
        sample = present.iloc[:1000]
        if sample.str.match(_ISO_RE).mean() > 0.5:
            parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
            return parsed.dt.tz_localize(None).astype("datetime64[ns]")
        uniques = pd.Series(present.unique())
        parts = uniques.str.extract(_SLASH_RE)
        dayfirst = True
        if parts[0].notna().any():
            first = pd.to_numeric(parts[0], errors="coerce")
            second = pd.to_numeric(parts[1], errors="coerce")
            if (second > 12).any() and not (first > 12).any():
                dayfirst = False
        parsed_uniques = pd.to_datetime(uniques, format="mixed", dayfirst=dayfirst, errors="coerce", utc=True)
        parsed_uniques = pd.Series(parsed_uniques).dt.tz_localize(None).astype("datetime64[ns]")
        mapping = pd.Series(parsed_uniques.to_numpy(), index=uniques.to_numpy())
        return text.map(mapping).astype("datetime64[ns]")
    except (ValueError, TypeError, OverflowError):
        return empty


def epoch_to_datetime(values: pd.Series) -> pd.Series:
    """Numeric epoch times (s, ms, µs or ns, told apart by magnitude) as ``datetime64[ns]``."""
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    magnitude = numbers.abs().median() if numbers.notna().any() else 0.0
    if magnitude > 1e17:
        unit = "ns"
    elif magnitude > 1e14:
        unit = "us"
    elif magnitude > 1e11:
        unit = "ms"
    else:
        unit = "s"
    try:
        return pd.to_datetime(numbers, unit=unit, errors="coerce").astype("datetime64[ns]")
    except (ValueError, OverflowError):
        return pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")


# What ``import-csv`` needs to call a CSV a CICFlowMeter flow table: without these a row says too little to
# describe or classify (``packetclip.language.facts.REQUIRED`` under their canonical names).
REQUIRED_COLUMNS: tuple[str, ...] = ("Flow Duration", "Total Fwd Packet", "Total Bwd packets", "Protocol")


def check_flow_columns(path: Path, label_column: str | None = None) -> None:
    """Refuse, before reading any data, a CSV whose header lacks the CICFlowMeter columns import-csv needs."""
    header = _read_header(path)
    _find_label(header, label_column, path)
    names = {canonical_column(n) for n in header}
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise DatasetFormatError(f"not a CICFlowMeter flow table: no column(s) {', '.join(missing)}",
                                 path=str(path), offset=0)


def import_flow_csv(
    path_or_dir,
    out_dir: str | Path,
    *,
    label_column: str | None = None,
    fill_value: float = 0.0,
    progress: bool = True,
    overwrite: bool = False,
) -> tuple[Path, pd.DataFrame]:
    """Turn flow CSVs (files, folders, or a list of either) into a flow-only workspace: its flow table with
    ``flow_id`` per row and a manifest (kind ``"csv"``), so ``packetclip info`` and every stage open it.

    Every file's header must hold the CICFlowMeter columns ``REQUIRED_COLUMNS`` and a label (checked before
    any data is read) and at least one row must remain, else :class:`DatasetFormatError` names the file. A
    folder that already holds a workspace is refused unless ``overwrite``.

    No ``capture`` column is written: the CSV files of public datasets are usually cut per class or
    per day, so grouping by file would not be a capture-level split (``source_file`` keeps the file
    name for those who want it; ``split --by capture`` is refused on such a workspace). Returns the path
    written and the table.
    """
    import time

    from packetclip import __version__
    from packetclip.traffic.workspace import Workspace

    files = list_csv_files(path_or_dir)
    for path in files:
        check_flow_columns(path, label_column)
    ws = Workspace.create(out_dir, overwrite=overwrite)
    df = read_flow_csv(files, label_column=label_column, fill_value=fill_value, progress=progress)
    if df.empty:
        raise DatasetFormatError("no flow rows (only a header, or every row lacked a label)",
                                 path=str(files[0]) if len(files) == 1 else None)
    df.insert(0, "flow_id", np.arange(len(df), dtype=np.int64))
    for column in df.columns:
        if df[column].dtype == object:
            df[column] = df[column].astype("string")
    report = df.attrs.get("packetclip_report", {})
    df.attrs = {}
    target = ws.write_flows(df)
    ws.write_manifest({
        "kind": "csv",
        "packetclip_version": __version__,
        "created_unix": time.time(),
        "sources": [str(p) for p in files],
        "settings": {"label_column": label_column, "fill_value": float(fill_value), "write_packets": False},
        "totals": {"flows": int(len(df)), "files": len(files)},
        "import": {k: v for k, v in report.items() if k != "files"},
    })
    df.attrs["packetclip_report"] = report
    return target, df
