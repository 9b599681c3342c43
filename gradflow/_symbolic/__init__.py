"""The symbolic core (SymPy only): nodes, activations, cells, chain rule, many steps, counts."""
