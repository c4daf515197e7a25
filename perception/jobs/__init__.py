"""Perception training jobs: self-supervised pretraining and supervised fine-tuning (see `perception.train`)."""
