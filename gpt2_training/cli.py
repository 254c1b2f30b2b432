"""Train or fine-tune DialoGPT (the original LSP_train.py's flags, logs and checkpoints).

1 GPU (fp16 autocast by default, as the original):
$ python LSP_train.py --model_name_or_path configs/117M --init_checkpoint models/small/pytorch_model.bin \
    --train_input_file data/train.128len.db --eval_input_file data/dummy_data.tsv --output_dir models/ \
    --train_batch_size 16 --gradient_accumulation_steps 2 --eval_batch_size 16 --learning_rate 1e-5

8 GPUs on one node (DDP; gradients are SUMMED over ranks, as the original):
$ torchrun --standalone --nproc_per_node=8 LSP_train.py <same flags>

2 nodes x 8 GPUs (run on each node; --node_rank 0 on the master, 1 on the other):
$ torchrun --nnodes=2 --nproc_per_node=8 --node_rank=0 --master_addr=10.0.0.1 --master_port=29500 \
    LSP_train.py <same flags>

CPU (fp32 gives the original's fp32 Adam; --bf16 true is faster on CPUs with bf16 units):
$ python LSP_train.py <same flags> --fp16 false

LoRA on the frozen --init_checkpoint (pip install 'dialogpt[lora]'; the merged model is written at the end):
$ python LSP_train.py <same flags> --lora_r 8 --lora_alpha 16 --learning_rate 1e-4

Exact resume of an interrupted run: add `--resume_from_checkpoint last` (or a run folder / .pkl).
See docs/training.md for every flag and the output files.
"""
import logging
import os
import sys

from gpt2_training.args import UsageError, parse_args
from lsp_io.cli import command, prog_name


def set_cpu_threads(args) -> None:
    """On CPU, one thread per *free* core (split among the node's ranks): threads of a busy core
    wait in barriers and a step gets several times slower (lsp_io/cpu.py)."""
    import torch
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.threads is None and (not device.startswith("cpu") or "OMP_NUM_THREADS" in os.environ):
        return
    from lsp_io.cpu import free_cores
    ranks = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    torch.set_num_threads(args.threads or max(1, free_cores()[0] // ranks))


@command("LSP_train.py")
def main(argv=None) -> dict:
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s -   %(message)s",
                        datefmt="%m/%d/%Y %H:%M:%S", level=logging.INFO)
    try:
        args = parse_args(argv)
    except UsageError as e:
        print(f"{prog_name('LSP_train.py')}: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    # torch and the training code only now: --help and a bad flag answer at once
    from lsp_io.cpu import use_huge_pages
    use_huge_pages()
    from gpt2_training.failures import failure
    from gpt2_training.loop import train
    set_cpu_threads(args)
    try:
        return train(args)
    except Exception as e:  # one line and the exit status docs/training.md documents; a bug keeps its traceback
        code = failure(e)
        if code is None:
            raise
        print(f"{prog_name('LSP_train.py')}: error: {e}", file=sys.stderr)
        raise SystemExit(code) from None


if __name__ == "__main__":
    code = main()  # the run's summary, or an exit status
    sys.exit(code if isinstance(code, int) else 0)
