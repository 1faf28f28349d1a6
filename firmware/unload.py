# Phases of the application need different code: what one phase alone needs is dropped
# when it ends, so the next phase (TLS above all) gets the heap back.


def unload(*prefixes):
    """Forget modules only one phase needs (provisioning crypto, GATT tables): their code
    and tables go back to the heap, which the cloud phase needs for TLS."""
    import gc
    import sys
    for name in list(sys.modules):
        for p in prefixes:
            if name == p or name.startswith(p + "."):
                del sys.modules[name]
                # The parent package keeps its submodule as an attribute: drop that too.
                parent, _, child = name.rpartition(".")
                if parent in sys.modules:
                    try:
                        delattr(sys.modules[parent], child)
                    except AttributeError:
                        pass
                break
    gc.collect()
