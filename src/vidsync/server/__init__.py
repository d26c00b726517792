"""The HTTP API and the process wiring behind ``vidsync serve``."""
