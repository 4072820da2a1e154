"""recomb core: pure PyTorch/NumPy building blocks for Q-network recombination.

Nothing here imports the web or database layers; every function takes its
randomness as an argument and returns results instead of writing them.
"""
