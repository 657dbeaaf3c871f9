"""Model code, training, evaluation and export to the Triton model repository."""
