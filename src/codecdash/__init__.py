"""codecdash: the live dashboard of an AI video codec research framework."""

from codecdash.client import Client, ClientError

__version__ = "0.1.0"
__all__ = ["Client", "ClientError", "__version__"]
