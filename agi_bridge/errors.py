"""The exception tree of agi_bridge. Every error the package raises on purpose is one of these::

    BridgeError
    ├── ConfigError            bad configuration file: names the file, key path and line
    ├── ProtocolError          bytes from a peer that break a protocol
    │   ├── MediaError         a media port's stream broke (ends that one call)
    │   │   ├── AudioSocketError   malformed AudioSocket frame
    │   │   └── RtpError           malformed RTP packet / chan_websocket message
    │   ├── AgiError           malformed FastAGI environment or reply
    │   └── RealtimeProtocolError  a Realtime event that is not JSON / not an object
    ├── RealtimeError          the Realtime session failed (connect, fatal server error, closed)
    ├── ControlError           an action on the channel failed (reported to the model)
    │   ├── AmiError           an AMI action failed, timed out, or AMI is not connected
    │   └── AriError           an ARI request failed, timed out, or ARI is not connected
    └── ToolError              a tool was called with bad arguments (reported to the model)

Messages say what and where ("AudioSocket frame too large: type 0x10 length 65000 > 8192").
"""

from __future__ import annotations


class BridgeError(Exception):
    """Root of every error agi_bridge raises on purpose."""


class ConfigError(BridgeError):
    """The configuration is invalid. ``str()`` reads ``file:line key.path: message``."""

    def __init__(self, message: str, *, file: str = "", key: str = "", line: int | None = None):
        self.file = file
        self.key = key
        self.line = line
        self.reason = message
        where = file
        if line is not None:
            where = f"{where}:{line}" if where else f"line {line}"
        prefix = " ".join(p for p in (where, key) if p)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class ProtocolError(BridgeError):
    """A peer sent bytes that break the protocol."""


class MediaError(ProtocolError):
    """A call's media stream broke (malformed input, far end stopped reading)."""


class AudioSocketError(MediaError):
    """Malformed AudioSocket stream."""


class RtpError(MediaError):
    """Malformed RTP packet or chan_websocket message."""


class AgiError(ProtocolError):
    """Malformed FastAGI request or reply."""


class RealtimeProtocolError(ProtocolError):
    """A Realtime message that is not a JSON object with a string ``type``."""


class RealtimeError(BridgeError):
    """The Realtime session failed: connect error/timeout, fatal server error, or closed."""


class ControlError(BridgeError):
    """An action on the call's channel (DTMF, transfer, status) could not be done."""


class AmiError(ControlError):
    """An AMI action failed, timed out, or the manager is not connected."""


class AriError(ControlError):
    """An ARI request failed, timed out, or the ARI connection is down."""


class ToolError(BridgeError):
    """A tool call had bad arguments or could not be carried out; the text goes to the model."""
