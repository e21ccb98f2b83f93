"""lightkeeper: console and agent for servers that run LightRAG for many users."""

__version__ = "0.1.0"
