"""Data: the label scheme file, study samples and loaders for local public datasets."""
