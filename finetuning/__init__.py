"""The fine-tuning job: train, gate and register a new encoder version, in a child process."""
