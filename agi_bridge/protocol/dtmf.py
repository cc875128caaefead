"""The DTMF alphabet, in one place: what AudioSocket, AMI, ARI, RTP (RFC 4733) and the
send_dtmf tool accept. Sans-I/O."""

from __future__ import annotations

DIGITS = "0123456789*#ABCD"
# RFC 4733 section 3.2: events 0-9 are the digits, 10 is *, 11 is #, 12-15 are A-D
RFC4733_EVENT = {digit: code for code, digit in enumerate(DIGITS)}
RFC4733_DIGIT = dict(enumerate(DIGITS))
PAUSE = "w"  # in a send_dtmf string: half a second without a key


def is_digit(value: str) -> bool:
    """One DTMF key, either case for A-D."""
    return len(value) == 1 and value.upper() in RFC4733_EVENT
