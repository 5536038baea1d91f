"""The enforcer: cuts and restores institutions' links over SSH, carefully.

Vendor drivers render command templates (``enforcer/templates/<device_type>/``), the durable
queue in the database carries each action from ``approved`` to ``verified`` or ``failed``, and
the safety rails (``enforcer.rails``) decide what may run at all. See docs/enforcer.md."""
