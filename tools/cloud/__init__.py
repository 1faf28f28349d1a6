"""Local cloud for roost: stdlib HTTP services backed by one SQLite file.

- db.Database          thread-safe SQLite storage (bootstrap configs, ...)
- http.HTTPService     ThreadingHTTPServer + a small method/path router
- bootstrap.BootstrapService   the Mainflux/Magistrala bootstrap contract
"""
