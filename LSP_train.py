"""The original's training script, and `dialogpt train` (same flags): train or fine-tune DialoGPT,
on 1 GPU, with DDP (`torchrun ... LSP_train.py <flags>`), on CPU or with LoRA. The logic is
gpt2_training/cli.py; see docs/training.md for every flag and the output files.

$ python LSP_train.py --model_name_or_path configs/117M --init_checkpoint models/small/pytorch_model.bin \
    --train_input_file data/train.128len.db --eval_input_file data/dummy_data.tsv --output_dir models/
"""
import sys

from gpt2_training.cli import main, set_cpu_threads  # noqa: F401  (tests and scripts use these)

if __name__ == "__main__":
    code = main()  # the run's summary, or an exit status
    sys.exit(code if isinstance(code, int) else 0)
