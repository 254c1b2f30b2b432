"""DialoGPT training: the original LSP_train.py's semantics, split by concern.

args (CLI/config) · schedule (set_lr) · optim (the original's Adam / FusedAdam, AdamW) ·
distributed (torchrun/DDP, summed gradients) · checkpoint (.pkl + exact resume) ·
eval (eval_model_loss) · logs (train_log/eval_log, tqdm) · loop (the training loop).
"""
