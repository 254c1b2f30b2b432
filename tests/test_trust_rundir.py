"""A run folder that holds a user's results (a checkpoint, a log row) is never deleted, and the
message says what exists; an eval file too small for one batch is refused at start-up."""
import signal
from pathlib import Path

import pytest

import gpt2_training.loop as loop
from gpt2_training.eval import check_gives_a_batch
from lsp_model import runfolder
from test_train_trust import SignalAt, argv_of, batches, cli, model_dir
from train_helpers import ListLoader


class SignalDuringEval(ListLoader):
    """An eval loader that sends `sig` to this process when it is first iterated: the step's .pkl
    is written, its .resume.pt is not yet (the original evaluates between the two)."""

    def __init__(self, batches, sig):
        super().__init__(batches)
        self.sig = sig

    def __iter__(self):
        import os
        os.kill(os.getpid(), self.sig)
        yield from super().__iter__()


def test_sigterm_between_the_pkl_and_its_resume_state_keeps_the_folder(tmp_path, capsys, monkeypatch):
    train, evals = ListLoader(batches(8)), SignalDuringEval([b[:4] for b in batches(1)], signal.SIGTERM)
    monkeypatch.setattr(loop, "make_loaders", lambda *a: (train, evals))
    (tmp_path / "valid.tsv").write_text("hi\tthere\n")  # present; the injected loader is used
    argv = [a for a in argv_of(tmp_path, model_dir(tmp_path, "m"), "--valid_step", 1, "--eval_input_file",
                               tmp_path / "valid.tsv") if a != "--skip_eval"]
    code, err = cli(argv, capsys, monkeypatch)
    run = next((tmp_path / "out").iterdir())
    assert code == 143 and len([e for e in err if "error:" in e]) == 1
    assert err[-1].startswith("LSP_train.py: error: interrupted at update 1, before the first complete checkpoint; "
                              "GP2-pretrain-step-1.pkl was written but not its resume state"), err[-1]
    assert f"{run} is kept" in err[-1] and "exact resume starts from the last complete .pkl + .resume.pt pair" in err[-1]
    assert (run / "GP2-pretrain-step-1.pkl").is_file() and (run / "train_log.txt").is_file()
    assert "GP2-pretrain-step-1.pkl" in runfolder.results(run)


def test_log_rows_alone_keep_the_folder(tmp_path, capsys, monkeypatch):
    code, err = cli(argv_of(tmp_path, model_dir(tmp_path, "m"), "--valid_step", 5), capsys, monkeypatch,
                    SignalAt(batches(), signal.SIGINT, 3))
    run = next((tmp_path / "out").iterdir())
    assert code == 130 and err[-1] == (f"LSP_train.py: error: interrupted at update 1, before the first complete "
                                       f"checkpoint; nothing to resume from (exact resume starts from the last "
                                       f"complete .pkl + .resume.pt pair); {run} is kept with what it holds "
                                       f"(train_log.txt)")


def test_results_are_whatever_is_not_scaffolding(tmp_path):
    run = tmp_path / "GPT2.x"
    run.mkdir()
    for name in ("config.json", "run_config.json", "train.lock", "tokenizer.json", "vocab.json", "merges.txt",
                 "tokenizer_config.json", ".GP2-pretrain-step-1.pkl.tmp-host-1-ab-xyz"):
        (run / name).write_text("x")
    (run / "train_log.txt").write_text("epoch,global_step\n")
    (run / "eval_log.txt").write_text("")
    assert runfolder.results(run) == []
    (run / "notes.md").write_text("mine")
    assert runfolder.results(run) == ["notes.md"]
    (run / "notes.md").unlink()
    (run / "eval_log.txt").write_text("epoch,global_step\n1,2\n")
    assert runfolder.results(run) == ["eval_log.txt"]


@pytest.mark.parametrize("lines,batch,why", [(6, 32, "lower --eval_batch_size to at most 6, or add examples"),
                                              (3, 2, "no example fits --max_seq_length")])
def test_an_eval_file_without_one_full_batch_is_refused_at_start_up(tmp_path, lines, batch, why):
    from gpt2_training.args import UsageError
    from lsp_data.loader import DynamicBatchingLoader
    from lsp_model.tokenizer import load_tokenizer
    path = tmp_path / "valid.tsv"
    path.write_text("".join(f"hello there {i}\tfine thanks {i}\n" for i in range(lines)))
    loader = DynamicBatchingLoader(path, load_tokenizer(), True, batch, 64 if batch == 32 else 2)
    with pytest.raises(UsageError) as e:
        check_gives_a_batch(loader, path, batch)
    assert str(e.value) == (f"--eval_input_file {path}: {lines} lines give no full batch of --eval_batch_size {batch} "
                            f"(a partial batch is dropped, as in the original): {why}")
    check_gives_a_batch(DynamicBatchingLoader(path, load_tokenizer(), True, 1, 1024), path, 1)  # fits: silent


def test_lsp_train_refuses_the_small_eval_file_before_the_run_folder(tmp_path, capsys, monkeypatch):
    """README's own-data fine-tune on a small import: one line at start-up, no run folder."""
    import lsp_data.loader
    monkeypatch.setattr(lsp_data.loader, "BucketingDataLoader", lambda *a, **k: ListLoader(batches()))
    (tmp_path / "valid.tsv").write_text("".join(f"hi {i}\tthere {i}\n" for i in range(6)))
    argv = [a for a in argv_of(tmp_path, model_dir(tmp_path, "m", vocab_size=50257), "--eval_input_file",
                               tmp_path / "valid.tsv", "--eval_batch_size", 32) if a != "--skip_eval"]
    code, err = cli(argv, capsys, monkeypatch)
    assert code == 2 and err[-1].startswith(f"LSP_train.py: error: --eval_input_file {tmp_path / 'valid.tsv'}: 6 "
                                            "lines give no full batch of --eval_batch_size 32"), err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_a_finished_run_folder_is_a_starting_point(tmp_path, capsys, monkeypatch):
    """README's offline own-data path: --model_name_or_path RUN --init_checkpoint RUN."""
    from lsp_model.checkpoint import read_state_dict
    code, err = cli(argv_of(tmp_path / "a", model_dir(tmp_path, "m"), "--num_optim_steps", 2), capsys, monkeypatch,
                    ListLoader(batches(4)))
    run = next((tmp_path / "a" / "out").iterdir())
    assert code == 0, err
    code, err = cli(argv_of(tmp_path / "b", run, "--init_checkpoint", run, "--num_optim_steps", 2, "--learning_rate",
                            0), capsys, monkeypatch, ListLoader(batches(4)))
    new = next((tmp_path / "b" / "out").iterdir())
    assert code == 0, err
    a, b = read_state_dict(run / "GP2-pretrain-step-2.pkl"), read_state_dict(new / "GP2-pretrain-step-2.pkl")
    assert all((a[k] == b[k]).all() for k in a)  # learning rate 0: the demo's weights carried over as they were
