"""Floor 0: file and network utilities every package uses (atomic writes, verified downloads).

Imports nothing from the project, so any package may import it.
"""
