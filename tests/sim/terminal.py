"""A person at a terminal on a simulated board's serial console: typing, and reading the answer."""
import re
import time

PROMPT = "roost> "


def type_(board, text, wait_for=None, timeout=5):
    """Type like a person: one character at a time. Returns what the console showed meanwhile
    (up to `wait_for`, or a short pause)."""
    mark = board.mark()
    for ch in text.encode():
        board.write_console(bytes([ch]))
        time.sleep(0.003)
    if wait_for:
        board.wait_for(wait_for, since=mark, timeout=timeout)
    else:
        time.sleep(0.3)
    return bytes(board.out[mark:]).decode(errors="replace")


def command(board, line, answer):
    """Type a command line and wait for its answer and the next prompt."""
    return type_(board, line + "\r", re.compile(re.escape(answer.encode()) + rb".*roost> ", re.S))
