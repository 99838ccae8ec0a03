import os
import tempfile
from pathlib import Path

import pytest
import torch

# The official MedMNIST files: $MEDSSL_DATA_ROOT, else ../shared/data/medmnist beside the repo.
REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("MEDSSL_DATA_ROOT", REPO.parent / "shared" / "data" / "medmnist"))

torch.set_num_threads(min(2, torch.get_num_threads()))
# decoded user data is cached here during the tests, never in the user's ~/.cache/medssl
os.environ["MEDSSL_CACHE"] = tempfile.mkdtemp(prefix="medssl-test-cache-")


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA_ROOT / "breastmnist.npz").is_file():
        pytest.fail(f"official MedMNIST files not found in {DATA_ROOT}; set MEDSSL_DATA_ROOT")
    return DATA_ROOT
