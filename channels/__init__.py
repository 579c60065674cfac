"""Channels: one adapter module per delivery channel, registered in an explicit dict."""
