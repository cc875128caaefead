"""agi_bridge: an OpenAI Realtime speech-to-speech agent on Asterisk phone calls."""

__version__ = "0.1.0"
