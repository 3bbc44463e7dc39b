"""The uppercase echo protocol: requirements, a pure model, and the checker."""
