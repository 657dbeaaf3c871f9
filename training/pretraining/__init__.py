"""TL-ERC pre-training (paper 001) and SI-MTL (paper 002) on the served design's context model,
measured as arms x labelled fractions x seeds: `python -m training.pretraining`."""
