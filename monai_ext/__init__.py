"""monai_ext: networks, transforms, data, text and training machinery for text-guided segmentation bundles."""

__version__ = "0.1.0"
