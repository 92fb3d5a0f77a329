"""Dataset adapters: public flow CSVs, nDPI ground truth, and joins of either onto our own flow table."""

from packetclip.traffic.datasets.cic import (
    CANONICAL_COLUMNS,
    COLUMN_VARIANTS,
    canonical_column,
    list_csv_files,
    parse_timestamp_column,
    read_flow_csv,
)
from packetclip.traffic.datasets.join import join_labels, join_ndpi, label_ndpi, ndpi_count_agreement
from packetclip.traffic.datasets.ndpi import read_ndpi_result, read_ndpi_results

__all__ = [
    "CANONICAL_COLUMNS",
    "COLUMN_VARIANTS",
    "canonical_column",
    "join_labels",
    "join_ndpi",
    "label_ndpi",
    "list_csv_files",
    "ndpi_count_agreement",
    "parse_timestamp_column",
    "read_flow_csv",
    "read_ndpi_result",
    "read_ndpi_results",
]
