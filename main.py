# Starts the application unless boot.py saw the BOOT button held (safe mode).
if globals().get("SAFE_MODE"):
    print("roost: safe mode, application not started; REPL ready")
else:
    import firmware.app

    firmware.app.main()
