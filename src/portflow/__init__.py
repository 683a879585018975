"""portflow: market data to portfolio weights."""
__version__ = "0.1.0"
