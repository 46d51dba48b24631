"""Capture: run a program under the tracers and keep only what is safe to keep.

``run`` (``pkspy run``) puts pkcs11-spy, OpenSC's debug log and pcsc-lite's
spy in a program's path (``inject``, ``locate``), reads each through a FIFO
(``streams``: parser, then redactor, then a 0600 file) and passes the
program's exit status on; ``env`` (``pkspy env``) prints the settings for a
program started elsewhere.
"""
