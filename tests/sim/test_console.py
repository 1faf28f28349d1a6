"""A person at a terminal on the board's serial console (by hand, or through `roost console --port`),
and `roost console` doing the same jobs at the running firmware's prompt: the registration key (masked,
validated), status, factory reset. The key never appears on the console in clear, and a refused key
changes nothing."""
import subprocess
import sys
from pathlib import Path

import pytest

from tools import cli
from tools.console import Console, ConsoleError

from tests.sim.terminal import PROMPT, command, type_

ROOT = Path(__file__).resolve().parents[2]
POP = "abcd1234"
FACTORY = {"pop": POP, "serial": "74743827342",
           "endpoints": {"registration": "http://cloud.roost.local/midpoint/ws/iot/devices"}}


@pytest.fixture
def powered(new_board):
    """A board out of the box (no Wi-Fi yet: in its provisioning window)."""
    b = new_board(factory=FACTORY)
    b.wait_for(b"provisioning open for", timeout=15)
    return b


def test_a_person_sets_the_key_with_a_masked_echo(powered):
    shown = type_(powered, "\r", PROMPT)
    assert shown.endswith(PROMPT)
    shown = type_(powered, "key\r", "registration key: ")
    # A typo fixed with backspace; lower case is fine.
    shown = type_(powered, "hq481047-1jwp")
    assert shown == "*" * 13
    shown = type_(powered, "\x7f")
    assert shown == "\b \b"
    shown = type_(powered, "orf43\r", "registration key stored: HQ481047-********")
    assert shown.startswith("*" * 5)
    shown = command(powered, "status", "registration: key HQ481047-********, not registered yet")
    assert "node 240AC4" in shown or "node " in shown
    out = bytes(powered.out).decode(errors="replace").upper()
    assert "1JWORF43" not in out and "1JWO" not in out


@pytest.mark.parametrize("typed", ["HQ481047_1JWORF43", "HQ481047-1JWORF4", "HQ481047-1JWORF433",
                                   "HQ48104-71JWORF43", "HQ481047-1JW RF43", "", "HQ481047-1JWÖRF43"])
def test_malformed_keys_are_refused_and_nothing_is_stored(powered, typed):
    type_(powered, "key\r", "registration key: ")
    shown = type_(powered, typed + "\r", "nothing stored")
    assert "registration key refused: a registration key looks like XXXXXXXX-XXXXXXXX" in shown
    command(powered, "status", "registration: key not set, no key (type: key)")


def test_a_key_typed_in_clear_on_the_command_line_is_not_taken(powered):
    shown = command(powered, "key HQ481047-1JWORF43", "nothing stored")
    assert "masked echo" in shown
    command(powered, "status", "registration: key not set")


def test_help_and_unknown_commands(powered):
    command(powered, "help", "commands: status, key, factory-reset, reboot, help")
    shown = command(powered, "launch-rockets", "unknown command 'launch-rockets'")
    # Arrow keys (escape sequences) are swallowed, not taken as text.
    command(powered, "\x1b[A\x1b[Dhelp", "commands: status")
    assert "Traceback" not in shown


def test_factory_reset_asks_first(powered):
    type_(powered, "key\r", "registration key: ")
    type_(powered, "HQ481047-1JWORF43\r", "registration key stored")
    type_(powered, "factory-reset\r", "type yes: ")
    type_(powered, "no\r", "factory reset cancelled")
    command(powered, "status", "key HQ481047-********")
    type_(powered, "factory-reset\r", "type yes: ")
    mark = powered.mark()
    type_(powered, "yes\r", "rebooting")
    powered.wait_for(b"provisioning open for", since=mark, timeout=15)
    command(powered, "status", "registration: key not set")


def test_the_python_repl_still_works_after_typing(powered, console_of):
    command(powered, "status", "registration:")
    c = console_of(powered)
    assert c.exec("print(6 * 7)").strip() == "42"


def test_long_commands_go_in_raw_paste_mode_as_on_a_board(powered, console_of):
    # mpremote sends code in raw-paste mode (flow-controlled windows) when the board offers it,
    # and falls back to 256 bytes every 10 ms when it does not: this one spans many windows.
    c = console_of(powered)
    data = bytes(range(32, 127)) * 8
    assert c.exec("d = %r\nprint(len(d), sum(d))" % data).split() == [str(len(data)), str(sum(data))]
    assert c.t.use_raw_paste, "the board refused raw-paste mode"
    with pytest.raises(ConsoleError, match="SyntaxError"):
        c.exec("x = (1, 2")
    with pytest.raises(ConsoleError, match="MemoryError"):
        c.exec("#" * 100000)                            # more than this board's whole heap
    assert c.exec("print(6 * 7)").strip() == "42"     # and it keeps serving


def roost(capsys, *argv):
    """Run `roost ...` in this process; (exit status, stdout, stderr)."""
    try:
        cli.main(list(argv))
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_roost_console_set_key_status_and_factory_reset(powered, capsys):
    port = "socket://127.0.0.1:%d" % powered.console.port
    mark = powered.mark()
    code, out, err = roost(capsys, "console", "set-key", "HQ481047-1JWORF43", "--port", port)
    assert code == 0, err
    assert "registration key stored: HQ481047-********" in out and "registers with it" in out

    code, out, err = roost(capsys, "console", "status", "--port", port)
    assert code == 0, err
    # The running firmware answered: it says what it is doing, and nothing restarted it.
    assert "state provisioning" in out and "firmware stopped" not in out, out
    assert "registration: key HQ481047-********, not registered yet" in out
    shown = bytes(powered.out[mark:])
    assert b"soft reboot" not in shown and b"1JWORF43" not in shown
    assert not any(line.startswith(("roost>", "registration key: ")) for line in out.splitlines()), out

    code, out, err = roost(capsys, "console", "set-key", "HQ481047-1JWORF4", "--port", port)
    assert code == 1 and "refused" in out and "did not store the key" in err

    code, out, err = roost(capsys, "console", "factory-reset", "--port", port)
    assert code == 1 and "--yes" in err
    mark = powered.mark()
    code, out, err = roost(capsys, "console", "factory-reset", "--yes", "--port", port)
    assert code == 0 and "factory reset done" in out
    powered.wait_for(b"provisioning open for", since=mark, timeout=15)
    code, out, err = roost(capsys, "console", "status", "--port", port)
    assert "registration: key not set" in out


def test_roost_console_status_of_a_stopped_firmware_restarts_it(powered, capsys):
    port = "socket://127.0.0.1:%d" % powered.console.port
    with Console(port) as c:
        c.exec("print(1)")                     # Ctrl-C: the firmware stops at the Python REPL
    mark = powered.mark()
    code, out, err = roost(capsys, "console", "status", "--port", port)
    assert code == 0 and "firmware stopped" in out and "not at its roost> prompt" in err
    powered.wait_for(b"provisioning open for", since=mark, timeout=15)       # running again


def test_roost_console_without_a_board_fails_in_one_line(capsys):
    code, out, err = roost(capsys, "console", "status", "--port", "socket://127.0.0.1:1")
    assert code == 1 and err.count("\n") == 1 and "cannot open console" in err


def test_roost_console_is_an_interactive_terminal(powered):
    # A person's session, piped: Enter for the prompt, `status`, then Ctrl-] to quit.
    port = "socket://127.0.0.1:%d" % powered.console.port
    r = subprocess.run([sys.executable, "-m", "tools", "console", "--port", port], input=b"\nstatus\n\x1d",
                       capture_output=True, timeout=30, cwd=ROOT)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, r.stderr
    assert "Ctrl-] quits" in r.stderr.decode()
    assert PROMPT in out and "registration: key not set" in out and "status" in out
    assert b"provisioning open" in bytes(powered.out)           # the firmware kept running
    r = subprocess.run([sys.executable, "-m", "tools", "console", "--port", "socket://127.0.0.1:1"],
                       input=b"", capture_output=True, timeout=30, cwd=ROOT)
    assert r.returncode == 1 and r.stderr.decode().count("\n") == 1 and "cannot open console" in r.stderr.decode()
