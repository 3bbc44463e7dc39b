"""Drivers: the only code in spec/ that touches sockets and processes."""
