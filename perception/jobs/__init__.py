"""Perception training jobs: self-supervised pretraining (`perception.jobs.pretrain`) and supervised
fine-tuning (`perception.jobs.finetune`), both on the `core.training` loop."""
