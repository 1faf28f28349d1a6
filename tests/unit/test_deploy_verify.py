"""`roost deploy --port` checks what the board holds after copying: a file that did not arrive
intact is an error naming it, and the board is not reset into half a firmware."""
import pytest

from tools import deploy


def test_a_file_that_differs_after_the_copy_fails_the_deploy(monkeypatch):
    calls = []
    answers = iter([{}, {"main.py": "0" * 64}])         # before: nothing; after: a bad main.py

    monkeypatch.setattr(deploy, "_board_hashes", lambda port: next(answers))
    monkeypatch.setattr(deploy, "mpremote", lambda port, *args, **kw: calls.append(args) or "")
    with pytest.raises(deploy.DeployError, match=r"verify failed: \d+ files differ on the board"):
        deploy.to_port("socket://127.0.0.1:1", log=lambda line: None)
    assert len(calls) == 1 and "reset" not in calls[0]         # copied, checked, never reset


def test_nothing_changed_means_nothing_copied_and_no_reset(monkeypatch):
    staging = deploy.build(False)
    import hashlib
    same = {p.relative_to(staging).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in staging.rglob("*") if p.is_file()}
    calls = []
    monkeypatch.setattr(deploy, "_board_hashes", lambda port: same)
    monkeypatch.setattr(deploy, "mpremote", lambda port, *args, **kw: calls.append(args) or "")
    assert deploy.to_port("socket://127.0.0.1:1", log=lambda line: None) == [] and calls == []
