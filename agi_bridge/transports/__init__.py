"""One module per way into the bridge; each implements agi_bridge.call.ports."""
