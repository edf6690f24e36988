"""What both applications share: YAML configs, checkpoints, one-line errors, pre-flight checks, prompts, where
teachers come from, and image / video writers."""
