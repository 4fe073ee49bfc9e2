"""Training and evaluation loops of the retrain and evaluate stages."""
