"""Shared fixtures: the golden set (the full one beside the clone, else the copy in tests/golden)."""
import os
import signal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# One thread everywhere, child processes included: LSP_train's CPU default follows the cores
# free at its start, which under `pytest -n 2` depends on what the other worker is doing, and
# exact-resume tests compare runs bit for bit. Tests of the thread choice set it themselves.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Tests Ctrl-C the programs they start (SIGINT, as a terminal does). A pytest started as a
# background job inherits SIGINT ignored, and so would those programs (Python then installs no
# KeyboardInterrupt handler); a handler here is reset to the default in every child.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def shared_path() -> Path | None:
    """The full set (a folder holding golden/ and data/): $DIALOGPT_SHARED when set, else
    ../shared beside the clone; None when that has no golden/ (then tests/golden is used, so
    DIALOGPT_SHARED=/nonexistent forces the bundled copy)."""
    p = Path(os.environ["DIALOGPT_SHARED"]) if "DIALOGPT_SHARED" in os.environ else REPO.parent / "shared"
    return p if (p / "golden").is_dir() else None


def pytest_report_header(config):
    p = shared_path()
    return f"golden set: {p / 'golden' if p else REPO / 'tests' / 'golden (bundled copy)'}"


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory) -> Path:
    """The full set when found (a held-back twin set is swapped in there), else the copy bundled
    in tests/golden and tests/data, unpacked once per session (tests/golden_store.py)."""
    p = shared_path()
    if p is not None:
        return p
    from golden_store import unpack
    return unpack(REPO / "tests", tmp_path_factory.mktemp("golden_set"))


@pytest.fixture(scope="session")
def golden(shared_dir) -> Path:
    return shared_dir / "golden"


@pytest.fixture(scope="session")
def dialogrpt_dir(golden, tmp_path_factory) -> Path:
    """The DialogRPT golden checkpoints (+ ensemble.yml) as golden/dialogrpt/checkpoints.tar.xz
    unpacks, rebuilt from the bundled trimmed copy when the full set is absent."""
    from golden_store import dialogrpt_checkpoints
    return dialogrpt_checkpoints(golden / "dialogrpt", tmp_path_factory.mktemp("dialogrpt"))


@pytest.fixture(scope="session")
def repo_dir() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tiny_dialogue_models(tmp_path_factory):
    """A tiny forward DialoGPT and its reverse (MMI) model, trained once per session on real
    chitchat exchanges (tests/tiny_model.py): {"forward", "reverse": model dirs with tokenizer,
    "pairs": [(context turns, response)], "forward_loss", "reverse_loss"}."""
    from tiny_model import build_tiny_models
    return build_tiny_models(tmp_path_factory.mktemp("tiny_dialogue"))


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """One intra-op thread for the whole suite: on a shared 2-core CI box two OpenMP threads spin
    in barriers and small ops run far slower; one thread is also deterministic."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
