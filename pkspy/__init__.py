"""pkspy: read, decode and safely share PKCS#11 and smart-card traces."""

__version__ = "0.1.0"
