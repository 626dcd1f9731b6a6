"""Upstream adapters: one module per public source, each turning its documented payload into records.

An adapter names its fixed host (no user-supplied URLs, ever), builds the one request it makes,
and parses the body into records for each stream that fetch feeds (one call may feed several
streams: field splitting). It does no I/O itself; `adapters.fetcher` does, so the replay server
and the tests exercise the same httpx path as production.
"""
