"""fastcnn: fast CPU convolutional networks with a scikit-learn interface."""
from ._config import config_summary, show_config
from ._version import __version__

__all__ = ["__version__", "show_config", "config_summary"]
