"""NetFlow v5/v9/IPFIX collector: UDP listener, batch decoders, classifier, aggregation.

See docs/netflow.md; the decoder is hand-written for speed (see decoder.py)."""
