"""sonofm: an open ultrasound foundation-model toolkit (USFM and ACLUS, reimplemented)."""

__version__ = "0.1.0"
