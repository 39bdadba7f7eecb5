"""The logic of each dataflow node, one processor class per node (see pipeline/runtime.py).

A stage takes one decoded message (or a `Tick`, or a `Control`) and returns the messages to
send; it never touches dora or metadata, so it is unit-tested with plain messages.
"""
