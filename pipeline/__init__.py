"""The pure-Python core of the voice assistant: no dora import anywhere in this package."""
