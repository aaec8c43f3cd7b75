"""The training harness behind ``jaxvision.train``; see ``docs/train.md``."""
