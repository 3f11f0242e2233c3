"""vidgen core library: video I/O, data, models, training, evaluation, tracking."""

__version__ = "0.1.0"
