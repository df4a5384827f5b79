"""Evaluation: Inception features, FID/KID/IS, paired image metrics."""
