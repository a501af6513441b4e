"""The reference the converter is measured against: pyarrow reads a Criteo
TSV with `pyarrow.csv.read_csv` and writes it with `pyarrow.parquet.write_table`
(snappy, as ctr-dl). Usage: pyarrow_convert.py INPUT OUTPUT.parquet"""
import sys
import time

import pyarrow as pa
import pyarrow.csv as csv
import pyarrow.parquet as pq

names = ["label"] + [f"I{i}" for i in range(1, 14)] + [f"C{i}" for i in range(1, 27)]
types = {"label": pa.int8(), **{f"I{i}": pa.int64() for i in range(1, 14)}, **{f"C{i}": pa.string() for i in range(1, 27)}}
t0 = time.perf_counter()
table = csv.read_csv(
    sys.argv[1],
    read_options=csv.ReadOptions(column_names=names),
    parse_options=csv.ParseOptions(delimiter="\t"),
    convert_options=csv.ConvertOptions(column_types=types),
)
t1 = time.perf_counter()
pq.write_table(table, sys.argv[2], compression="snappy")
t2 = time.perf_counter()
print(f"pyarrow: {table.num_rows} rows, read {t1 - t0:.2f}s, write {t2 - t1:.2f}s, total {t2 - t0:.2f}s")
