"""Tables and value decoders; imports nothing from pkspy."""
