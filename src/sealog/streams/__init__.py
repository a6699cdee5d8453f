"""Streams: each org's log delivered to its destinations, in index order, at least once."""
