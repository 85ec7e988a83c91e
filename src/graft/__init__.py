"""graft: take a trained network to a new dataset."""
