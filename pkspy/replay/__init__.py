"""``pkspy replay`` and ``pkspy card replay``: a recorded trace made again, live, and compared."""
