"""toolkit: tiny batched proxy models for studying hyperparameter transfer."""

__version__ = "0.1.0"
