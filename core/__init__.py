"""recomb core: pure PyTorch/NumPy building blocks for Q-network recombination.

Nothing here imports the web or database layers; every function takes its
randomness as an argument and returns results instead of writing them.
``core.configs``, ``core.arch``, ``core.checkpoint_file``, ``core.export``,
``core.imports``, ``core.states`` and ``core.work`` import without torch,
so the web process validates jobs and handles files without loading it.
"""
