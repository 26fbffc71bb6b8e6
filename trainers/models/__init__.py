"""The dual encoder: image and text towers with projections into one embedding space."""
