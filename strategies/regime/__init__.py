"""Regime models: the BTC regime (score multiplier), the HMM and the Neural CDE classifiers."""
