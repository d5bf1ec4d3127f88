"""The version of asttag, apart so that modules stamping files need not import the package."""

__version__ = "0.1.0"
