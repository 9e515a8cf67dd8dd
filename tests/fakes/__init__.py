"""Reusable fakes for tests (a local Hyperliquid /info server)."""
