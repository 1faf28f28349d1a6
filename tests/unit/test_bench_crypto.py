"""The crypto benchmark (tests/bench/crypto.py and its chip half, crypto_chip.py) still runs at the
firmware's heap, gives every figure, and times the right work: the chip's SHA-512 digest and SenML
text are CPython's. Each operation once, so a figure cannot go missing or wrong unnoticed."""
import hashlib

from tests.bench import crypto


def test_chip_figures_and_outputs():
    figures, checks = crypto.chip(quick=True)
    assert list(figures) == list(crypto.LABELS)
    for name, (value, unit) in figures.items():
        assert value > 0 and unit in ("ms", "us"), (name, value, unit)
    assert checks == {"sha512": hashlib.sha512(crypto.SHA512_INPUT).hexdigest(),
                      "senml": crypto.senml_batch().decode()}


def test_rows():
    rows = []
    crypto.run(rows, quick=True)
    for name, value, unit in rows:
        assert name.startswith("crypto: ") and float(value) > 0, (name, value, unit)
    names = [r[0] for r in rows]
    chip = ": chip (unix port)"
    assert [n[:-len(chip)] for n in names if n.endswith(chip)] == \
        ["crypto: " + label for label in crypto.LABELS.values()]
    # the ratios the issue asks for, each with its CPython row just before it
    for label in ("X25519 scalar mult", "AES-256-CTR per KiB", "AES-256-GCM encrypt per KiB",
                  "AES-256-GCM decrypt per KiB", "SHA-512 per KiB",
                  "SRP6a device work per sec2 session (B, S, K, M, HAMK)",
                  "SenML per reading (batch of 32)"):
        i = names.index("crypto: %s: chip/CPython" % label)
        assert names[i - 1].startswith("crypto: %s: CPython" % label), names[i - 1]
