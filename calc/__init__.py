"""calc: the margin engine (live engine, models, kernels, stress, SPAN)."""
