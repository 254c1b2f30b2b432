"""LSP_train.py end to end with the real data layer: a DB built by lsp_data from the golden
training TSV, the eval TSV through DynamicBatchingLoader, exact resume with the real loader."""
import json
from pathlib import Path

import pytest
import torch

import LSP_train
from lsp_data.prepro import build_db
from lsp_model.checkpoint import load_model
from gpt2_training.eval import eval_model_loss
from lsp_data.loader import DynamicBatchingLoader
from lsp_model.tokenizer import load_tokenizer
from train_helpers import read_log


@pytest.fixture(scope="module")
def db(golden, tmp_path_factory):
    path, _ = build_db(golden / "train" / "train.tsv", tmp_path_factory.mktemp("db") / "train.128len.db",
                       max_seq_len=128, progress=False)
    return Path(path)


def test_eval_loader_reproduces_golden_init_eval(golden):
    model = load_model(golden / "model" / "init.pkl", golden / "model" / "config.json")
    loader = DynamicBatchingLoader(golden / "train" / "eval.tsv", load_tokenizer(), True, 8, 128)
    loss, ppl = eval_model_loss(model, loader, 0, verbose=False)
    want = json.loads((golden / "train" / "eval_init.json").read_text())
    assert loss == pytest.approx(want["eval_loss_init"], rel=1e-6)


def _argv(golden, db, out, *extra):
    return [str(x) for x in ["--model_name_or_path", golden / "model", "--init_checkpoint", golden / "model" / "init.pkl",
                             "--train_input_file", db, "--eval_input_file", golden / "train" / "eval.tsv",
                             "--output_dir", out, "--train_batch_size", "8", "--gradient_accumulation_steps", "2",
                             "--eval_batch_size", "8", "--num_optim_steps", "6", "--valid_step", "3",
                             "--warmup_steps", "2", "--fp16", "false", "--pbar", "false", "--learning_rate", "1e-4",
                             *extra]]


@pytest.mark.slow
def test_cli_run_and_exact_resume_with_real_loader(golden, db, tmp_path):
    a = LSP_train.main(_argv(golden, db, tmp_path / "a"))
    LSP_train.main(_argv(golden, db, tmp_path / "b", "--stop_after_steps", "3"))
    b = LSP_train.main(_argv(golden, db, tmp_path / "b", "--resume_from_checkpoint", "last"))
    la, lb = read_log(Path(a["run_dir"]) / "train_log.txt"), read_log(Path(b["run_dir"]) / "train_log.txt")
    assert len(la) == 7 and [r[:-1] for r in la] == [r[:-1] for r in lb]
    assert read_log(Path(a["run_dir"]) / "eval_log.txt") == read_log(Path(b["run_dir"]) / "eval_log.txt")
    for (k, x), y in zip(a["model"].state_dict().items(), b["model"].state_dict().values()):
        assert torch.equal(x, y), k
    # the run folder is a checkpoint for every loader of the toolkit (highest step)
    m = load_model(a["run_dir"])
    assert torch.equal(m.transformer.wte.weight, a["model"].transformer.wte.weight)
