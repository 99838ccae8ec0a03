"""Data: every dataset as the same arrays and device splits.

- `medmnist`: the official MedMNIST npz files (names, MD5s, download, validation);
- `preprocess`: the one recorded preprocessing (file or array -> model input);
- `dicom`: DICOM files to 8-bit grey as the standard says (pydicom);
- `sources`: a user's labelled folders, CSV files and npz arrays (listing, split, decoding, cache);
- `pools`: unlabeled pretraining pools and the held-out-image check;
- `splits`: `Split` on the device, stratified label subsets;
- `load`: one entry point over all of them (`dataset_info`, `load_arrays`, `load_splits`).

The names below are the package's public API (`from medssl import data as D`).
"""

from medssl.catalog import DATA_ROOT_ENV, DATASETS, SPLITS, DatasetInfo
from medssl.data.load import (
    check_same_data,
    class_names,
    dataset_info,
    load_arrays,
    load_splits,
    recorded_preprocessing,
    resolve_positive,
)
from medssl.data.medmnist import dataset_summary, default_data_root, load_official
from medssl.data.preprocess import Preprocessing, read_file
from medssl.data.splits import Split, class_counts, stratified_subset, to_split

__all__ = [
    "DATASETS",
    "DATA_ROOT_ENV",
    "SPLITS",
    "DatasetInfo",
    "Preprocessing",
    "Split",
    "check_same_data",
    "class_counts",
    "class_names",
    "dataset_info",
    "dataset_summary",
    "default_data_root",
    "load_arrays",
    "load_official",
    "load_splits",
    "read_file",
    "recorded_preprocessing",
    "resolve_positive",
    "stratified_subset",
    "to_split",
]
