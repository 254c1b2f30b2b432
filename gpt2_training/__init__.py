"""DialoGPT training: the original LSP_train.py's semantics, split by concern.

args (CLI/config) · schedule (set_lr) · optim (the original's Adam / FusedAdam, AdamW) ·
distributed (torchrun/DDP, summed gradients) · state (TrainState: counters, running sums) ·
checkpoint (.pkl + exact resume: Checkpointer.save/restore) · eval (eval_model_loss) ·
logs (RunLog: train_log/eval_log, tqdm, tensorboard) · loop (setup and the training loop).
"""
