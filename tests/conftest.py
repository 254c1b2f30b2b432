"""Shared fixtures: where ../shared lives, and a skip with a reason when it does not."""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_path() -> Path:
    return Path(os.environ.get("DIALOGPT_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    p = shared_path()
    if not (p / "golden").is_dir():
        pytest.skip(f"shared golden data not found at {p} (set DIALOGPT_SHARED)")
    return p


@pytest.fixture(scope="session")
def golden(shared_dir) -> Path:
    return shared_dir / "golden"


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
