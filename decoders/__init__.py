"""Tables and value decoders; imports nothing from pkspy."""

# What `explain` reads codes as (decoders/explain.py), named here so that a command
# line can offer them without loading the tables.
NAMESPACES = ("pkcs11", "opensc", "sw", "pcsc", "gskit", "atr", "apdu", "ins")
