"""curate: clean, multilingual training data from messy instruction/chat datasets."""
__version__ = "0.1.0"
