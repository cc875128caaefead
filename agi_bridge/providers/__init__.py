"""Speech-to-speech providers behind one seam (base.py): the OpenAI Realtime GA protocol
today (realtime.py). The conversation logic sees only the neutral events and commands."""
